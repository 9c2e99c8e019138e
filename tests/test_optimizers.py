"""Tests for tfrank.optimizers: Adagrad computes what Keras's Adagrad computes, with work that follows the batch's rows.

The weights and accumulators are Keras's bit for bit; the lazily kept moving average of the weights is Keras's dense
one to float32 rounding (exact for rows averaged every step).
"""

import doctest
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrank import optimizers

# Rows of a 6-row table each step reads: repeated rows, rows left alone for several steps, rows never read (3 and 4
# only late or never), and row 2 read every step.
_ROWS_PER_STEP = ([0, 2, 2, 5, 0, 0], [1, 2, 1, 1], [2], [0, 2, 2, 5, 0, 0], [3, 3, 2, 0], [2, 5])


def _make_variables() -> tuple[keras.Variable, keras.Variable, keras.Variable]:
    rng = np.random.default_rng(1)
    return (keras.Variable(rng.random((6, 3), dtype=np.float32), name="table"),
            keras.Variable(rng.random((3, 2), dtype=np.float32), name="kernel"),
            keras.Variable(rng.random((2,), dtype=np.float32), name="bias"))


def _loss(table, kernel, bias, rows, scale):
    # Gathers from the tf.Variable, so the table's gradient is IndexedSlices and its read is of those rows only.
    return tf.reduce_sum(tf.sin((tf.matmul(tf.gather(table.value, rows), kernel) + bias) * scale))


def _run_steps(optimizer, variables, steps: range, in_graph: bool) -> None:
    """Applies the steps ``steps`` of ``_ROWS_PER_STEP``; the bias gets no gradient at odd steps."""

    def step(rows, scale, bias_has_gradient):
        with tf.GradientTape() as tape:
            loss = _loss(*variables, rows, scale)
        gradients = tape.gradient(loss, list(variables))
        assert isinstance(gradients[0], tf.IndexedSlices)
        if not bias_has_gradient:
            gradients[2] = None
        optimizer.apply_gradients(zip(gradients, variables))

    if in_graph:
        step = tf.function(step, autograph=False, reduce_retracing=True)
    for index in steps:
        step(tf.constant(_ROWS_PER_STEP[index]), tf.constant(float(index + 1)), index % 2 == 0)


def _train(optimizer_class, in_graph: bool, steps: range = range(len(_ROWS_PER_STEP)), finalize: bool = False,
           **optimizer_kwargs) -> dict[str, list[np.ndarray]]:
    """The weights, accumulators and step count after ``steps``; with ``finalize``, the weights finalized."""
    variables = _make_variables()
    optimizer = optimizer_class(learning_rate=0.7, **optimizer_kwargs)
    optimizer.build(list(variables))
    _run_steps(optimizer, variables, steps, in_graph)
    if finalize:
        optimizer.finalize_variable_values(list(variables))
    return {
        "weights": [np.asarray(v) for v in variables],
        "accumulators": [np.asarray(v) for v in optimizer.variables if v.name.endswith("accumulator")],
        "iterations": [np.asarray(optimizer.iterations)],
    }


def _assert_same(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        assert len(actual[key]) == len(expected[key]) > 0, key
        for got, want in zip(actual[key], expected[key]):
            np.testing.assert_array_equal(got, want, err_msg=key)


@pytest.mark.parametrize("in_graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("ema", [False, True], ids=["plain", "ema"])
def test_adagrad_steps_equal_keras_adagrad_bit_for_bit(in_graph, ema):
    kwargs = {"use_ema": True, "ema_momentum": 0.9} if ema else {}
    expected = _train(keras.optimizers.Adagrad, in_graph, **kwargs)
    actual = _train(optimizers.Adagrad, in_graph, **kwargs)
    _assert_same(actual, expected)
    assert not np.array_equal(actual["weights"][0], _train(optimizers.Adagrad, in_graph,
                                                           initial_accumulator_value=1.0)["weights"][0])


@pytest.mark.parametrize("in_graph", [False, True], ids=["eager", "tf.function"])
def test_lazy_average_finalizes_to_keras_dense_average(in_graph):
    expected = _train(keras.optimizers.Adagrad, in_graph, finalize=True, use_ema=True, ema_momentum=0.9)["weights"]
    actual = _train(optimizers.Adagrad, in_graph, finalize=True, use_ema=True, ema_momentum=0.9)["weights"]
    raw = _train(optimizers.Adagrad, in_graph)["weights"]
    for got, want, trained in zip(actual, expected, raw):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert np.abs(got - trained).max() > 1e-3  # the average is not the last weights
    # Averaged at every step: the same arithmetic as Keras's, so the same bits.
    np.testing.assert_array_equal(actual[0][2], expected[0][2])
    np.testing.assert_array_equal(actual[1], expected[1])


@pytest.mark.parametrize("kwargs", [{"gradient_accumulation_steps": 2}, {"ema_overwrite_frequency": 2}],
                         ids=["gradient_accumulation", "overwrite_frequency"])
def test_average_is_keras_own_where_keras_averages_mid_step(kwargs):
    kwargs = {"use_ema": True, "ema_momentum": 0.8, **kwargs}
    expected = _train(keras.optimizers.Adagrad, True, finalize=True, **kwargs)
    actual = _train(optimizers.Adagrad, True, finalize=True, **kwargs)
    _assert_same(actual, expected)
    plain = _train(optimizers.Adagrad, True, finalize=True, use_ema=True, ema_momentum=0.8)
    assert np.abs(actual["weights"][0] - plain["weights"][0]).max() > 1e-3  # the option changed the training


def test_finalize_before_any_step_keeps_the_weights():
    variables = _make_variables()
    initial = [np.asarray(v) for v in variables]
    optimizer = optimizers.Adagrad(use_ema=True)
    optimizer.build(list(variables))
    optimizer.finalize_variable_values(list(variables))
    for variable, value in zip(variables, initial):
        np.testing.assert_array_equal(np.asarray(variable), value)


def test_finalize_mid_run_and_back_to_the_raw_weights_leaves_the_average_unchanged():
    # What the training run does to evaluate the averaged model after an epoch, then train on.
    momentum = {"use_ema": True, "ema_momentum": 0.9}
    expected = _train(optimizers.Adagrad, False, finalize=True, **momentum)["weights"]
    variables = _make_variables()
    optimizer = optimizers.Adagrad(learning_rate=0.7, **momentum)
    optimizer.build(list(variables))
    _run_steps(optimizer, variables, range(3), in_graph=False)
    raw = [tf.identity(tf.convert_to_tensor(v)) for v in variables]
    optimizer.finalize_variable_values(list(variables))
    for variable, value in zip(variables, raw):
        variable.assign(value)
    _run_steps(optimizer, variables, range(3, len(_ROWS_PER_STEP)), in_graph=False)
    optimizer.finalize_variable_values(list(variables))
    for variable, want in zip(variables, expected):
        np.testing.assert_allclose(np.asarray(variable), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("in_graph", [False, True], ids=["eager", "tf.function"])
def test_resumed_averaging_run_equals_uninterrupted_run(tmp_path, in_graph):
    momentum = {"use_ema": True, "ema_momentum": 0.9}
    expected = _train(optimizers.Adagrad, in_graph, finalize=True, **momentum)["weights"]
    variables = _make_variables()
    optimizer = optimizers.Adagrad(learning_rate=0.7, **momentum)
    optimizer.build(list(variables))
    _run_steps(optimizer, variables, range(3), in_graph)
    path = tf.train.Checkpoint(variables=list(variables), optimizer=optimizer).write(str(tmp_path / "ckpt"))

    resumed = [keras.Variable(np.zeros(v.shape, np.float32), name=v.name) for v in variables]
    resumed_optimizer = optimizers.Adagrad(learning_rate=0.7, **momentum)
    resumed_optimizer.build(resumed)
    tf.train.Checkpoint(variables=resumed, optimizer=resumed_optimizer).read(path).assert_consumed()
    _run_steps(resumed_optimizer, resumed, range(3, len(_ROWS_PER_STEP)), in_graph)
    resumed_optimizer.finalize_variable_values(resumed)
    for variable, want in zip(resumed, expected):
        np.testing.assert_array_equal(np.asarray(variable), want)


@pytest.mark.parametrize("more_steps", [0, 3], ids=["finalized_at_once", "trained_on"])
def test_keras_averaging_checkpoint_restores_and_trains_on_with_its_averages(tmp_path, more_steps):
    momentum = {"use_ema": True, "ema_momentum": 0.9}
    steps = range(3, 3 + more_steps)
    variables = _make_variables()
    keras_optimizer = keras.optimizers.Adagrad(learning_rate=0.7, **momentum)
    keras_optimizer.build(list(variables))
    _run_steps(keras_optimizer, variables, range(3), in_graph=False)
    path = tf.train.Checkpoint(variables=list(variables), optimizer=keras_optimizer).write(str(tmp_path / "ckpt"))
    _run_steps(keras_optimizer, variables, steps, in_graph=False)
    keras_optimizer.finalize_variable_values(list(variables))

    restored = [keras.Variable(np.zeros(v.shape, np.float32), name=v.name) for v in variables]
    optimizer = optimizers.Adagrad(learning_rate=0.7, **momentum)
    optimizer.build(restored)
    tf.train.Checkpoint(variables=restored, optimizer=optimizer).read(path).expect_partial()
    _run_steps(optimizer, restored, steps, in_graph=False)
    optimizer.finalize_variable_values(restored)
    for got, want in zip(restored, variables):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)


def _ops(graph: tf.Graph) -> list[tf.Operation]:
    """The ops of ``graph`` and of the functions it calls."""
    ops = graph.get_operations()
    for function in graph._functions.values():
        if hasattr(function, "graph"):
            ops += _ops(function.graph)
    return ops


@pytest.mark.parametrize("ema", [False, True], ids=["plain", "ema"])
def test_embedding_step_builds_no_op_over_the_whole_table(ema):
    # A step's cost must follow the rows it touches: no op may produce a table-sized tensor (a square root of the
    # whole accumulator, a dense average update, or a read of the whole table, which copies it once sparse updates
    # have been applied to it).
    table = keras.Variable(np.ones((1009, 4), np.float32))
    kernel = keras.Variable(np.ones((4, 1), np.float32))
    optimizer = optimizers.Adagrad(use_ema=ema)
    optimizer.build([table, kernel])

    def step(rows):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.matmul(tf.gather(table.value, rows), kernel))
        optimizer.apply_gradients(zip(tape.gradient(loss, [table, kernel]), [table, kernel]))

    graph = tf.function(step, autograph=False).get_concrete_function(tf.TensorSpec([None], tf.int32)).graph
    ops = _ops(graph)
    assert {"ResourceScatterAdd", "ResourceGather"} <= {op.type for op in ops}
    assert [(op.type, output.shape) for op in ops for output in op.outputs
            if output.shape.rank and output.shape[0] == 1009] == []


# Logical devices must be set before TensorFlow starts, so the two-replica run gets a process of its own.
_MIRRORED_SCRIPT = textwrap.dedent("""
    import json
    import keras, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfrank import optimizers

    rows_per_step = [[0, 2, 2, 5], [1, 2, 1, 1], [2, 4, 4, 2], [0, 2, 3, 5]]  # each replica takes two

    def train(strategy):
        with strategy.scope():
            rng = np.random.default_rng(1)
            table = keras.Variable(rng.random((6, 3), dtype=np.float32))
            kernel = keras.Variable(rng.random((3, 2), dtype=np.float32))
            optimizer = optimizers.Adagrad(learning_rate=0.7, use_ema=True, ema_momentum=0.9)
            optimizer.build([table, kernel])

        def replica_step(rows):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.sin(tf.matmul(tf.gather(table.value, rows), kernel)))
            gradients = tape.gradient(loss, [table, kernel])
            optimizer.apply_gradients(zip(gradients, [table, kernel]))

        step = tf.function(lambda rows: strategy.run(replica_step, args=(rows,)), autograph=False)
        batches = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(tf.constant(rows_per_step)).unbatch().batch(4))
        for rows in batches:
            step(rows)
        optimizer.finalize_variable_values([table, kernel])
        return [np.asarray(table), np.asarray(kernel)], strategy.num_replicas_in_sync

    one, _ = train(tf.distribute.get_strategy())
    two, replicas = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print(json.dumps({"replicas": replicas, "difference": max(float(np.abs(a - b).max()) for a, b in zip(one, two)),
                      "moved": float(np.abs(one[0] - np.random.default_rng(1).random((6, 3))).max())}))
""")


def test_two_replica_mirrored_averaging_equals_one_replica():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True, text=True, env=env,
                             timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["moved"] > 1e-2 and report["difference"] < 1e-6


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
