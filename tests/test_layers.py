"""EmbeddingTable: row lookups, Keras tracking and saving; sharded over two parameter servers, its lookups, gradients,
Adagrad updates and checkpoints equal the whole table's.

The sharded cases run in one subprocess with an in-process cluster (a worker and two parameter servers as
``tf.distribute.Server`` threads, this process the coordinator): connecting to a cluster changes the process's eager
context for good, which the other test modules must not inherit.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT

from tfrank import distribute, layers, optimizers

ROWS, DIM = 11, 3
BATCH_ROWS = [[1, 3], [9, 3], [10, 0]]  # row 3 twice: its gradients add up


def _table(**kwargs) -> layers.EmbeddingTable:
    keras.utils.set_random_seed(1)
    table = layers.EmbeddingTable(ROWS, DIM, name="movie_embedding", **kwargs)
    table.build()
    return table


@pytest.mark.parametrize("graph_mode", [False, True], ids=["eager", "graph"])
def test_lookup_returns_the_rows_of_the_table(graph_mode):
    table = _table()
    lookup = tf.function(table) if graph_mode else table
    vectors = lookup(tf.constant(BATCH_ROWS, tf.int64))
    assert vectors.shape == (3, 2, DIM)
    np.testing.assert_array_equal(vectors.numpy(), table.embeddings.numpy()[np.array(BATCH_ROWS)])
    assert table.compute_output_shape((3, 2)) == (3, 2, DIM)


def test_table_is_one_trainable_keras_variable_named_after_the_layer():
    table = _table()
    assert table.trainable_variables == [table.embeddings]
    assert table.embeddings.path == "movie_embedding/embeddings" and tuple(table.embeddings.shape) == (ROWS, DIM)
    assert isinstance(table.embeddings.value, tf.Variable) and not layers.is_sharded(table.embeddings)
    values = table.embeddings.numpy()
    assert np.all(np.abs(values) <= 0.05) and np.std(values) > 0.01  # Keras's "uniform", as keras.layers.Embedding


@pytest.mark.parametrize("num_rows, dim, message", [(0, 3, "num_rows=0: must be >= 1"), (4, 0, "dim=0: must be >= 1")])
def test_empty_table_is_refused_naming_the_size(num_rows, dim, message):
    with pytest.raises(ValueError, match=message):
        layers.EmbeddingTable(num_rows, dim)


def test_config_round_trip_rebuilds_the_same_table():
    table = _table(embeddings_initializer="zeros")
    rebuilt = layers.EmbeddingTable.from_config(table.get_config())
    rebuilt.build()
    assert (rebuilt.num_rows, rebuilt.dim, rebuilt.name) == (ROWS, DIM, "movie_embedding")
    np.testing.assert_array_equal(rebuilt.embeddings.numpy(), np.zeros((ROWS, DIM)))


def test_keras_file_of_a_model_with_a_table_loads_back_the_weights(tmp_path):
    rows = keras.Input(shape=(2,), dtype="int64")
    model = keras.Model(rows, layers.EmbeddingTable(ROWS, DIM, name="movie_embedding")(rows))
    path = str(tmp_path / "table.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.get_layer("movie_embedding").embeddings.numpy(),
                                  model.get_layer("movie_embedding").embeddings.numpy())
    batch = np.array(BATCH_ROWS)
    np.testing.assert_array_equal(loaded(batch), model(batch))


def test_checkpoint_restores_the_table(tmp_path):
    table = _table()
    path = tf.train.Checkpoint(table=table).save(str(tmp_path / "ckpt"))
    assert dict(tf.train.list_variables(path))["table/embeddings/.ATTRIBUTES/VARIABLE_VALUE"] == [ROWS, DIM]
    other = _table(embeddings_initializer="zeros")
    tf.train.Checkpoint(table=other).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(other.embeddings.numpy(), table.embeddings.numpy())


def test_partitioner_shards_only_the_variables_created_for_tables():
    partition = distribute.rows_partitioner(2)
    assert list(partition(tf.TensorShape([ROWS, DIM]), tf.float32)) == [1, 1]
    with distribute.sharded_rows():
        assert list(partition(tf.TensorShape([ROWS, DIM]), tf.float32)) == [2, 1]
        assert list(partition(tf.TensorShape([ROWS]), tf.int64)) == [2]
        assert list(partition(tf.TensorShape([1, DIM]), tf.float32)) == [1, 1]  # fewer rows than servers
    assert list(partition(tf.TensorShape([ROWS]), tf.int64)) == [1]
    with pytest.raises(ValueError, match="num_shards=0: must be >= 1"):
        distribute.rows_partitioner(0)


@pytest.mark.parametrize("graph_mode", [False, True], ids=["eager", "graph"])
def test_gradients_of_whole_variables_are_the_tapes(graph_mode):
    table = _table()
    dense = keras.layers.Dense(1)
    dense.build((None, DIM))
    variables = table.trainable_variables + dense.trainable_variables

    def both():
        with tf.GradientTape(persistent=True) as tape:
            loss = tf.reduce_sum(dense(table(tf.constant(BATCH_ROWS))))
        return optimizers.gradients(tape, loss, variables), tape.gradient(loss, variables)

    ours, tapes = tf.function(both)() if graph_mode else both()
    assert isinstance(ours[0], tf.IndexedSlices)
    for mine, expected in zip(ours, tapes):
        np.testing.assert_array_equal(tf.convert_to_tensor(mine), tf.convert_to_tensor(expected))


# -- Sharded over two in-process parameter servers -------------------------------------------------------------

_CLUSTER_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import test_layers
test_layers._write_cluster_results({out!r})
sys.stdout.flush()
os._exit(0)  # the in-process servers never stop by themselves
"""


def _train_steps(table, dense, optimizer, steps, run, call):
    """``steps`` compiled Adagrad steps of ``sum(dense(table(BATCH_ROWS)))``: ``run(replica_step)`` in the step,
    ``call(step)`` to run one. Returns the trained variables."""
    variables = table.trainable_variables + dense.trainable_variables

    def replica_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(dense(table(tf.constant(BATCH_ROWS))))
        optimizer.apply_gradients(zip(optimizers.gradients(tape, loss, variables), variables))
        return loss

    step = tf.function(lambda: run(replica_step))
    for _ in range(steps):
        call(step)
    return variables


def _scheduled(coordinator):
    def call(step):  # one step at a time, each after the last: the same order as one process
        coordinator.schedule(step)
        coordinator.join()
    return call


def _model(strategy=None):
    scope = strategy.scope() if strategy else tf.init_scope()
    with scope:
        table = _table()
        keras.utils.set_random_seed(2)
        dense = keras.layers.Dense(1, name="score")
        dense.build((None, DIM))
        optimizer = optimizers.Adagrad(learning_rate=0.5, use_ema=True, ema_momentum=0.9)
        optimizer.build(table.trainable_variables + dense.trainable_variables)
    return table, dense, optimizer


def _variable(optimizer, path):
    return next(variable for variable in optimizer.variables if variable.path.endswith(path))


def _write_cluster_results(out: str) -> None:
    """Trains, looks up and checkpoints a sharded table and a whole twin; writes what the tests compare to ``out``."""
    ports = distribute.free_local_ports(4)
    cluster = tf.train.ClusterSpec({"chief": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{ports[1]}"],
                                    "ps": [f"127.0.0.1:{port}" for port in ports[2:]]})
    for job, index in (("worker", 0), ("ps", 0), ("ps", 1)):
        tf.distribute.Server(cluster, job_name=job, task_index=index, protocol="grpc", start=True)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(cluster, task_type="chief", task_id=0,
                                                                    rpc_layer="grpc")
    strategy = tf.distribute.ParameterServerStrategy(resolver,
                                                     variable_partitioner=distribute.rows_partitioner(2))
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    results = {}
    table, dense, optimizer = _model(strategy)
    whole_table, whole_dense, whole_optimizer = _model()
    results["shards"] = {variable.path: [[shard.device, shard.shape.as_list()] for shard in variable.value.variables]
                         for variable in optimizer.variables + table.variables if layers.is_sharded(variable)}
    rows = tf.constant(BATCH_ROWS)
    results["lookup_eager"] = table(rows).numpy().tolist()
    results["lookup_graph"] = tf.function(table)(rows).numpy().tolist()
    results["lookup_whole"] = whole_table(rows).numpy().tolist()

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(dense(table(rows)))
    gradient = optimizers.gradients(tape, loss, table.trainable_variables)[0]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(whole_dense(whole_table(rows)))
    whole_gradient = tape.gradient(loss, whole_table.trainable_variables)[0]
    results["gradient_type"] = type(gradient).__name__
    results["gradient"] = tf.convert_to_tensor(gradient).numpy().tolist()
    results["gradient_whole"] = tf.convert_to_tensor(whole_gradient).numpy().tolist()

    variables = _train_steps(table, dense, optimizer, 3, strategy.run, _scheduled(coordinator))
    whole_variables = _train_steps(whole_table, whole_dense, whole_optimizer, 3, lambda replica_step: replica_step(),
                                   lambda step: step())
    results["optimizer_variables"] = {
        variable.path: [np.asarray(variable.numpy(), np.float64).tolist(),
                        np.asarray(whole.numpy(), np.float64).tolist()]
        for variable, whole in zip(optimizer.variables + variables, whole_optimizer.variables + whole_variables)}

    directory = os.path.dirname(out)
    sharded_path = tf.train.Checkpoint(table=table, optimizer=optimizer).save(os.path.join(directory, "sharded"))
    whole_path = tf.train.Checkpoint(table=whole_table, optimizer=whole_optimizer).save(
        os.path.join(directory, "whole"))
    restored_whole, _, restored_whole_optimizer = _model()
    tf.train.Checkpoint(table=restored_whole, optimizer=restored_whole_optimizer).restore(
        sharded_path).expect_partial().assert_existing_objects_matched()
    restored_sharded, _, restored_sharded_optimizer = _model(strategy)
    tf.train.Checkpoint(table=restored_sharded, optimizer=restored_sharded_optimizer).restore(
        whole_path).expect_partial().assert_existing_objects_matched()
    results["checkpoint_keys_equal"] = (sorted(dict(tf.train.list_variables(sharded_path)).items())
                                        == sorted(dict(tf.train.list_variables(whole_path)).items()))
    results["sharded_into_whole"] = [restored_whole.embeddings.numpy().tolist(), table.embeddings.numpy().tolist()]
    results["whole_into_sharded"] = [restored_sharded.embeddings.numpy().tolist(),
                                     whole_table.embeddings.numpy().tolist(),
                                     layers.is_sharded(restored_sharded.embeddings)]
    accumulator = "/movie_embedding_embeddings_accumulator"  # optimizers are named adagrad, adagrad_1, ...
    results["accumulator_whole_into_sharded"] = [
        _variable(restored_sharded_optimizer, accumulator).numpy().tolist(),
        _variable(whole_optimizer, accumulator).numpy().tolist(),
        layers.is_sharded(_variable(restored_sharded_optimizer, accumulator))]

    optimizer.finalize_variable_values(variables)
    whole_optimizer.finalize_variable_values(whole_variables)
    results["finalized"] = [table.embeddings.numpy().tolist(), whole_table.embeddings.numpy().tolist()]
    with open(out, "w") as f:
        json.dump(results, f)


@pytest.fixture(scope="module")
def cluster_results(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cluster") / "results.json")
    script = _CLUSTER_SCRIPT.format(tests=str(REPO_ROOT / "tests"), out=out)
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    with open(out) as f:
        return json.load(f)


def test_table_and_its_optimizer_state_shard_over_both_parameter_servers(cluster_results):
    shards = cluster_results["shards"]
    devices = [f"/job:ps/replica:0/task:{task}/device:CPU:0" for task in (0, 1)]
    assert shards["movie_embedding/embeddings"] == [[devices[0], [6, DIM]], [devices[1], [5, DIM]]]
    # The per-row state holds the same rows on the same server as the table.
    for state in ("accumulator", "average"):
        assert shards[f"adagrad/movie_embedding_embeddings_{state}"] == shards["movie_embedding/embeddings"]
    assert shards["adagrad/movie_embedding_embeddings_average_step"] == [[devices[0], [6]], [devices[1], [5]]]
    assert not any(path.startswith(("score", "adagrad/score")) for path in shards)  # the dense layer stays whole


def test_sharded_lookup_equals_the_whole_tables_eagerly_and_in_graph_mode(cluster_results):
    expected = np.array(cluster_results["lookup_whole"])
    assert expected.shape == (3, 2, DIM)
    np.testing.assert_array_equal(cluster_results["lookup_eager"], expected)
    np.testing.assert_array_equal(cluster_results["lookup_graph"], expected)


def test_sharded_gradient_is_one_row_sparse_gradient_of_the_whole_table(cluster_results):
    assert cluster_results["gradient_type"] == "IndexedSlices"
    expected = np.array(cluster_results["gradient_whole"])
    assert np.count_nonzero(np.abs(expected).sum(axis=1)) == 5  # rows 0, 1, 3, 9, 10
    np.testing.assert_allclose(cluster_results["gradient"], expected, atol=1e-6)


def test_adagrad_updates_each_shard_as_it_updates_the_whole_table(cluster_results):
    variables = cluster_results["optimizer_variables"]
    assert "movie_embedding/embeddings" in variables and "adagrad/movie_embedding_embeddings_average" in variables
    for path, (sharded, whole) in variables.items():
        np.testing.assert_allclose(sharded, whole, atol=1e-6, rtol=0, err_msg=path)
    table, initial = np.array(variables["movie_embedding/embeddings"][1]), _table().embeddings.numpy()
    assert np.array_equal(table[[2, 4]], initial[[2, 4]]) and not np.allclose(table[1], initial[1])
    np.testing.assert_allclose(*cluster_results["finalized"], atol=1e-6, rtol=0)


def test_sharded_and_whole_checkpoints_restore_into_each_other(cluster_results):
    assert cluster_results["checkpoint_keys_equal"]
    restored, saved = cluster_results["sharded_into_whole"]
    np.testing.assert_array_equal(restored, saved)
    restored, saved, sharded = cluster_results["whole_into_sharded"]
    assert sharded
    np.testing.assert_array_equal(restored, saved)
    restored, saved, sharded = cluster_results["accumulator_whole_into_sharded"]
    assert sharded
    np.testing.assert_array_equal(restored, saved)
