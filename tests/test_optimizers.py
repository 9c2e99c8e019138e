"""Tests for tfrank.optimizers: Adagrad computes what Keras's Adagrad computes, bit for bit."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrank import optimizers


def _train(optimizer_class, in_graph: bool, **optimizer_kwargs) -> list[np.ndarray]:
    """Five steps on an embedding table (IndexedSlices gradients, repeated rows) and a dense kernel."""
    rng = np.random.default_rng(1)
    table = keras.Variable(rng.random((6, 3), dtype=np.float32))
    kernel = keras.Variable(rng.random((3, 2), dtype=np.float32))
    optimizer = optimizer_class(learning_rate=0.7, **optimizer_kwargs)
    optimizer.build([table, kernel])

    def step(rows, scale):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(tf.matmul(tf.gather(table, rows), kernel) * scale))
        gradients = tape.gradient(loss, [table, kernel])
        assert isinstance(gradients[0], tf.IndexedSlices)
        optimizer.apply_gradients(zip(gradients, [table, kernel]))

    if in_graph:
        step = tf.function(step, autograph=False)
    for scale in range(1, 6):
        step(tf.constant([0, 2, 2, 5, 0, 0]), tf.constant(float(scale)))
    return [np.asarray(variable) for variable in [table, kernel, *optimizer.variables]]


@pytest.mark.parametrize("in_graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("ema", [False, True], ids=["plain", "ema"])
def test_adagrad_steps_equal_keras_adagrad_bit_for_bit(in_graph, ema):
    kwargs = {"use_ema": True, "ema_momentum": 0.9} if ema else {}
    expected = _train(keras.optimizers.Adagrad, in_graph, **kwargs)
    actual = _train(optimizers.Adagrad, in_graph, **kwargs)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(actual[0], _train(optimizers.Adagrad, in_graph, initial_accumulator_value=1.0)[0])


def test_adagrad_repeated_rows_sum_their_squares_in_the_accumulator():
    table = keras.Variable(np.zeros((3, 1), np.float32))
    optimizer = optimizers.Adagrad(learning_rate=1.0, initial_accumulator_value=0.0, epsilon=0.0)
    optimizer.build([table])
    gradient = tf.IndexedSlices(tf.constant([[3.0], [4.0]]), tf.constant([1, 1]), tf.constant([3, 1]))
    optimizer.apply_gradients([(gradient, table)])
    # 3**2 + 4**2 = 25 (not (3 + 4)**2); the row steps by (3 + 4) / sqrt(25); rows not named keep their values.
    np.testing.assert_allclose(np.asarray(optimizer.variables[-1]), [[0.0], [25.0], [0.0]])
    np.testing.assert_allclose(np.asarray(table), [[0.0], [-7.0 / 5.0], [0.0]])


def test_adagrad_checkpoint_restores_into_keras_adagrad(tmp_path):
    weights = keras.Variable([1.0, 2.0])
    ours = optimizers.Adagrad(learning_rate=0.5)
    ours.apply_gradients([(tf.constant([0.3, -0.1]), weights)])
    path = tf.train.Checkpoint(optimizer=ours).write(str(tmp_path / "ckpt"))
    theirs = keras.optimizers.Adagrad(learning_rate=0.5)
    theirs.build([keras.Variable([0.0, 0.0])])
    tf.train.Checkpoint(optimizer=theirs).read(path).assert_existing_objects_matched()
    assert int(theirs.iterations) == 1
    np.testing.assert_allclose(np.asarray(theirs.variables[-1]), [0.1 + 0.09, 0.1 + 0.01], rtol=1e-6)


def test_adagrad_round_trips_through_keras_serialization():
    optimizer = optimizers.Adagrad(learning_rate=0.25, epsilon=1e-6)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is optimizers.Adagrad
    assert restored.get_config()["learning_rate"] == pytest.approx(0.25)
    assert restored.get_config()["epsilon"] == pytest.approx(1e-6)


def test_docstring_example_runs():
    outcome = doctest.testmod(optimizers, verbose=False)
    assert outcome.attempted > 0 and outcome.failed == 0
