"""Multi-worker training: the TF_CONFIG cluster, each replica's slice of the global batches, and two workers on
127.0.0.1 whose weights and metrics are compared with a single-process run over the same global batches."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT

from tfrank import distribute, training

TRAIN = str(REPO_ROOT / "bin" / "train.py")
# Softmax with weight averaging at learning rate 0.1: at Adagrad's 1.0 the last-bit differences of summing two
# replicas' gradients grow over the steps until the weights differ in the second decimal (the quality does not).
# A batch of 63 lists splits 31 + 32; the last, smaller batch splits too.
# The tutorial's model: the weights compared below are its tables, kernel and bias.
RUN_FLAGS = ["--model=tutorial", "--dataset=synthetic", "--loss=softmax", "--learning_rate=0.1",
             "--num_lists_per_user=2", "--batch_size=63", "--epochs=3", "--metrics=ndcg@5,mrr", "--verbose=1"]
WAIT_SECONDS = 300


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


class _Processes:
    """bin/train.py processes, each in its own process group, logging to files; all killed at the end of the test."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.started = []

    def start(self, name, args, tf_config=None):
        env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
        if tf_config:
            env["TF_CONFIG"] = tf_config
        log = open(self.log_dir / f"{name}.log", "w")
        process = subprocess.Popen([sys.executable, TRAIN, *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        log.close()
        self.started.append(process)
        return process

    def start_cluster(self, name, args, workers=2):
        ports = distribute.free_local_ports(workers)
        return [self.start(f"{name}-{index}", ["--distribution_strategy=multi_worker_mirrored", *args],
                           _tf_config(ports, index)) for index in range(workers)]

    def log(self, name):
        return (self.log_dir / f"{name}.log").read_text()

    def kill_all(self):
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.fixture
def processes(tmp_path):
    started = _Processes(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


def _finish(processes, running, names):
    codes = [process.wait(timeout=WAIT_SECONDS) for process in running]
    assert codes == [0] * len(running), "\n".join(processes.log(name)[-3000:] for name in names)


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory):
    """The same training in one process (no strategy): its model_dir, for the clusters to match."""
    root = tmp_path_factory.mktemp("single")
    process = subprocess.run([sys.executable, TRAIN, *RUN_FLAGS, f"--model_dir={root / 'model'}"],
                             capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert process.returncode == 0, process.stderr[-3000:]
    return root / "model"


def _model_weights(model_dir):
    checkpoints = str(model_dir / "softmax" / "checkpoints")
    reader = tf.train.load_checkpoint(checkpoints)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(checkpoints)
            if name.startswith("model/")}


def _assert_same_training(model_dir, single_dir):
    single, cluster = _model_weights(single_dir), _model_weights(model_dir)
    assert sorted(cluster) == sorted(single) and len(single) == 8  # two embedding tables; 3 Dense kernels, biases
    for name, weights in single.items():
        assert np.max(np.abs(weights)) > 0.0
        np.testing.assert_allclose(cluster[name], weights, atol=1e-5, err_msg=name)
    single_results = json.loads((single_dir / "results.json").read_text())["softmax"]
    results = json.loads((model_dir / "results.json").read_text())["softmax"]
    assert results["epochs"] == 3
    for split in ("val", "test"):
        for metric, value in single_results[split].items():
            assert results[split][metric] == pytest.approx(value, abs=1e-4), (split, metric)


def test_two_workers_train_the_weights_of_one_process_over_the_same_global_batches(processes, tmp_path,
                                                                                   single_process_run):
    model_dir, export_dir = tmp_path / "model", tmp_path / "export"
    cluster = processes.start_cluster("worker", [*RUN_FLAGS, f"--model_dir={model_dir}", f"--export_dir={export_dir}"])
    _finish(processes, cluster, ["worker-0", "worker-1"])
    _assert_same_training(model_dir, single_process_run)
    # The chief (worker 0) alone reports and writes: one export, no worker's temporary checkpoints left, no lock.
    assert "softmax  test" in processes.log("worker-0") and "[softmax] epoch 3/3" in processes.log("worker-0")
    assert "softmax" not in processes.log("worker-1")
    assert sorted(os.listdir(export_dir / "softmax")) == ["1"]
    assert sorted(os.listdir(model_dir)) == ["results.json", "run_config.json", "softmax"]
    assert sorted(os.listdir(model_dir / "softmax" / "checkpoints")) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index", "ckpt-3.data-00000-of-00001", "ckpt-3.index"]


@pytest.mark.parametrize("killed", [1, 0], ids=["worker", "chief"])
def test_killed_worker_stops_the_cluster_and_a_restart_resumes_to_the_uninterrupted_weights(processes, tmp_path,
                                                                                            single_process_run,
                                                                                            killed):
    model_dir = tmp_path / "model"
    args = [*RUN_FLAGS, f"--model_dir={model_dir}"]
    cluster = processes.start_cluster("first", args)
    first_checkpoint = model_dir / "softmax" / "checkpoints" / "ckpt-1.index"
    deadline = time.monotonic() + WAIT_SECONDS
    while not first_checkpoint.exists():
        assert all(process.poll() is None for process in cluster), processes.log("first-0")[-3000:]
        assert time.monotonic() < deadline, "no checkpoint of epoch 1 in time"
        time.sleep(0.02)
    os.killpg(cluster[killed].pid, signal.SIGKILL)  # in epoch 2
    cluster[killed].wait(timeout=30)  # reaped, as a launcher does: a zombie's pid would still look alive
    survivor = 1 - killed
    assert cluster[survivor].wait(timeout=120) != 0
    message = processes.log(f"first-{survivor}").strip().splitlines()[-1]
    assert message.startswith("train.py: error: a worker of the cluster stopped"), message
    assert "start every worker again with the same command" in message
    assert not (model_dir / "softmax" / "checkpoints" / "ckpt-2.index").exists()
    assert not (model_dir / "results.json").exists()

    restarted = processes.start_cluster("again", args)
    _finish(processes, restarted, ["again-0", "again-1"])
    assert "[softmax] resuming after epoch 1" in processes.log("again-0")
    # The killed chief's lock names a process that no longer runs on this host: the restarted chief takes it over.
    assert ("taking over the stale lock" in processes.log("again-0")) == (killed == 0)
    _assert_same_training(model_dir, single_process_run)


# Asynchronous steps change the weights in another order than one process does, so only the quality is compared:
# mse, whose quality moves least with the order of the steps, on three test lists per user.
PS_FLAGS = ["--model=tutorial", "--dataset=synthetic", "--loss=mse", "--num_lists_per_user=2", "--batch_size=63",
            "--epochs=3", "--eval_lists_per_user=3", "--metrics=ndcg@5,mrr", "--verbose=1"]


def test_parameter_server_cluster_reaches_the_quality_of_one_process(processes, tmp_path):
    single = subprocess.run([sys.executable, TRAIN, *PS_FLAGS, f"--model_dir={tmp_path / 'single'}"],
                            capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert single.returncode == 0, single.stderr[-3000:]
    model_dir, export_dir = tmp_path / "model", tmp_path / "export"
    ports = distribute.free_local_ports(4)
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{port}" for port in ports[1:3]],
               "ps": [f"127.0.0.1:{ports[3]}"]}
    args = ["--distribution_strategy=parameter_server", *PS_FLAGS, f"--model_dir={model_dir}",
            f"--export_dir={export_dir}"]
    servers = [processes.start(f"{task_type}-{index}", args,
                               json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))
               for task_type, index in (("worker", 0), ("worker", 1), ("ps", 0))]
    chief = processes.start("chief", args, json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    _finish(processes, [chief], ["chief"])
    assert all(server.poll() is None for server in servers)  # they serve until the launcher stops them
    expected = json.loads((tmp_path / "single" / "results.json").read_text())["mse"]["test"]
    results = json.loads((model_dir / "results.json").read_text())["mse"]
    assert results["epochs"] == 3 and results["test"]["ndcg@5"] == pytest.approx(expected["ndcg@5"], abs=0.005)
    assert results["test"]["ndcg@5"] > 0.85  # trained: random scores give about 0.8 here
    assert sorted(os.listdir(export_dir / "mse")) == ["1"]
    assert {"ckpt-2.index", "ckpt-3.index"} <= set(os.listdir(model_dir / "mse" / "checkpoints"))

    # The parameter servers' checkpoints (one shard per server and the chief) continue in one process.
    more = [flag for flag in PS_FLAGS if not flag.startswith("--epochs")] + ["--epochs=4", f"--model_dir={model_dir}"]
    continued = subprocess.run([sys.executable, TRAIN, *more], capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert "[mse] resuming after epoch 3" in continued.stdout
    assert json.loads((model_dir / "results.json").read_text())["mse"]["epochs"] == 4


# The tutorial job (MovieLens 100K, pairwise hinge, Adagrad with weight averaging) on fewer lists and epochs, in
# batches small enough for a hundred asynchronous steps, whose order then moves the quality little; three
# test lists per user, so that the quality comparison is not down to a few users.
TUTORIAL_FLAGS = ["--model=tutorial", "--num_lists_per_user=20", "--batch_size=256", "--epochs=3",
                  "--eval_lists_per_user=3", "--metrics=ndcg@5,mrr", "--verbose=1"]
_TABLES = ("ranking_model/movie_embedding/embeddings", "ranking_model/user_embedding/embeddings")


def _ps_cluster(processes, args, workers=2, ps=2):
    """A chief, ``workers`` workers and ``ps`` parameter servers on 127.0.0.1 running bin/train.py ``args``; the
    chief's process (the others serve until the test ends)."""
    ports = distribute.free_local_ports(1 + workers + ps)
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"],
               "worker": [f"127.0.0.1:{port}" for port in ports[1:1 + workers]],
               "ps": [f"127.0.0.1:{port}" for port in ports[1 + workers:]]}
    args = ["--distribution_strategy=parameter_server", *args]
    for task_type, count in (("worker", workers), ("ps", ps)):
        for index in range(count):
            processes.start(f"{task_type}-{index}", args,
                            json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))
    return processes.start("chief", args, json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))


def test_embedding_tables_shard_over_two_parameter_servers_and_train_the_tutorial_quality(processes, tmp_path,
                                                                                       movielens_dir):
    data = [f"--movielens_path={movielens_dir}"]
    single = subprocess.run([sys.executable, TRAIN, *data, *TUTORIAL_FLAGS, f"--model_dir={tmp_path / 'single'}"],
                            capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert single.returncode == 0, single.stderr[-3000:]
    expected = json.loads((tmp_path / "single" / "results.json").read_text())["pairwise_hinge"]
    assert "sharded_tables" not in expected

    model_dir, export_dir = tmp_path / "model", tmp_path / "export"
    chief = _ps_cluster(processes, [*data, *TUTORIAL_FLAGS, f"--model_dir={model_dir}", f"--export_dir={export_dir}"])
    _finish(processes, [chief], ["chief"])
    results = json.loads((model_dir / "results.json").read_text())["pairwise_hinge"]
    # Each table is split over both parameter servers; the dense layers stay whole.
    assert results["sharded_tables"] == {table: [f"/job:ps/replica:0/task:{task}/device:CPU:0" for task in (0, 1)]
                                         for table in _TABLES}
    assert results["epochs"] == 3
    assert results["test"]["ndcg@5"] == pytest.approx(expected["test"]["ndcg@5"], abs=0.005)
    assert results["test"]["ndcg@5"] > 0.8  # trained: random scores give about 0.74 here

    # One whole SavedModel: the tables as [rows, dim] variables, scoring like the model the chief evaluated.
    exported = tf.saved_model.load(str(export_dir / "pairwise_hinge" / "1"))
    assert sorted(exported.signatures) == ["serving_default", "tf_example"]
    shapes = {variable.name: tuple(variable.shape) for variable in exported.model_variables}
    assert shapes["ranking_model/user_embedding/embeddings:0"] == (944, 32)  # 943 users + the out-of-vocabulary row
    movie_rows, movie_dim = shapes["ranking_model/movie_embedding/embeddings:0"]
    assert movie_rows > 1600 and movie_dim == 32 and len(shapes) == 8
    scores = exported.signatures["serving_default"](user_id=tf.constant([1, 2], tf.int64),
                                                    movie_id=tf.constant([[1, 2, 3], [4, 5, -1]], tf.int64))["scores"]
    assert np.all(np.isfinite(scores.numpy()[:, :2])) and float(scores[1, 2]) == -1e9

    # The sharded checkpoint continues in one process, whose tables are whole.
    more = [flag for flag in TUTORIAL_FLAGS if not flag.startswith("--epochs")] + ["--epochs=4"]
    continued = subprocess.run([sys.executable, TRAIN, *data, *more, f"--model_dir={model_dir}"], capture_output=True,
                               text=True, timeout=WAIT_SECONDS)
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert "[pairwise_hinge] resuming after epoch 3" in continued.stdout
    resumed = json.loads((model_dir / "results.json").read_text())["pairwise_hinge"]
    assert resumed["epochs"] == 4 and "sharded_tables" not in resumed
    assert resumed["test"]["ndcg@5"] > 0.8


def test_sharded_tables_with_an_optimizer_that_cannot_update_them_are_refused_naming_the_fix(monkeypatch):
    model = training.models.RankingModel([1, 2], [3, 4], embedding_dim=2)
    monkeypatch.setattr(training.tfrank_layers, "is_sharded", lambda variable: "embedding" in variable.path)
    with pytest.raises(ValueError, match="optimizer='adam': cannot update the embedding tables sharded over the "
                                         "parameter servers .*use --optimizer=adagrad"):
        training._check_sharded_tables_trainable(model, training.make_optimizer("adam"), "adam")
    training._check_sharded_tables_trainable(model, training.make_optimizer("adagrad"), "adagrad")


@pytest.mark.parametrize("strategy", ["one_device", "mirrored"])
def test_one_replica_strategies_train_like_no_strategy(strategy):
    # mirrored takes every local GPU, else the CPU: here one replica, which takes the global batches whole.
    config = training.TrainConfig(dataset="synthetic", loss=("softmax",), num_lists_per_user=1, batch_size=256,
                                  epochs=2, verbose=0, metrics=("ndcg@5", "mrr"))
    without = training.run(config)["softmax"]
    within = training.run(dataclasses.replace(config, distribution_strategy=strategy))["softmax"]
    assert within["test"] == without["test"] and within["val"] == without["val"]
    assert within["test"]["ndcg@5"] > 0.0


def _input_context(pipelines, pipeline_id, replicas):
    return tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pipeline_id,
                                      num_replicas_in_sync=replicas)


@pytest.fixture(scope="module")
def ranking_data():
    config = training.TrainConfig(dataset="synthetic", num_lists_per_user=1, batch_size=50, verbose=0)
    return training.prepare_data(config)


@pytest.mark.parametrize("pipelines, replicas", [(3, 3), (2, 4), (1, 2)])
def test_replica_slices_of_every_pipeline_make_up_the_global_batches(ranking_data, pipelines, replicas):
    local = replicas // pipelines
    per_pipeline = [list(ranking_data.replica_batches(7, 2, _input_context(pipelines, index, replicas)))
                    for index in range(pipelines)]
    global_batches = list(ranking_data.train_batches(7, 2))
    assert all(len(elements) == len(global_batches) * local for elements in per_pipeline)
    for step, (features, labels) in enumerate(global_batches):
        # A pipeline hands its elements to its local replicas in turn, step after step.
        slices = [per_pipeline[pipeline][step * local + replica] for pipeline in range(pipelines)
                  for replica in range(local)]
        sizes = [int(s[1].shape[0]) for s in slices]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
        assert all(int(s[2]) == int(labels.shape[0]) for s in slices)
        np.testing.assert_array_equal(np.concatenate([s[0]["movie_id"] for s in slices]), features["movie_id"])
        np.testing.assert_array_equal(np.concatenate([s[0]["user_id"] for s in slices]), features["user_id"])
        np.testing.assert_array_equal(np.concatenate([s[1] for s in slices]), labels)


def test_last_batch_smaller_than_the_replicas_is_refused_naming_the_batch_size(ranking_data):
    last = ranking_data.num_train_lists % ranking_data.batch_size
    replicas = last + 1
    with pytest.raises(ValueError, match=rf"batch_size=50: .* last batch of {last} lists for {replicas} replicas"):
        ranking_data.replica_batches(1, 1, _input_context(1, 0, replicas))


def test_unknown_strategy_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="distribution_strategy='horovod': must be one of off, one_device, mirrored, "
                                         "multi_worker_mirrored, parameter_server"):
        training.TrainConfig(distribution_strategy="horovod").validate()


_PS_CLUSTER = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"], "ps": ["127.0.0.1:3"]}


@pytest.mark.parametrize("strategy, tf_config, message", [
    ("parameter_server", None, "distribution_strategy=parameter_server: TF_CONFIG is not set"),
    ("parameter_server", {"cluster": {"worker": ["127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}},
     "parameter_server needs one 'chief' \\(the coordinator\\), 'worker' and 'ps' tasks"),
    ("multi_worker_mirrored", {"cluster": _PS_CLUSTER, "task": {"type": "chief", "index": 0}},
     "multi_worker_mirrored runs only chief, worker tasks"),
])
def test_cluster_the_strategy_cannot_run_is_refused_naming_its_tasks(monkeypatch, strategy, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    with pytest.raises(ValueError, match=message):
        distribute.strategy_from_name(strategy)


@pytest.mark.parametrize("tf_config, message", [
    (None, "TF_CONFIG is not set"),
    ("{not json", "is not JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
     "has ps tasks: multi_worker_mirrored runs only chief, worker tasks"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
     r"task index=1: must be in \[0, 1\)"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "names no 'worker' addresses"),
])
def test_bad_cluster_stops_the_run_before_it_starts_naming_tf_config(monkeypatch, tmp_path, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    config = training.TrainConfig(dataset="synthetic", distribution_strategy="multi_worker_mirrored",
                                  model_dir=str(tmp_path / "model"))
    with pytest.raises(ValueError, match=message):
        training.run(config)
    assert not (tmp_path / "model").exists()


def _strategy_of_task(monkeypatch, cluster, task_type, index):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))
    return types.SimpleNamespace(cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver())


def test_worker_zero_is_the_chief_unless_the_cluster_names_one(monkeypatch):
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert distribute.is_chief(_strategy_of_task(monkeypatch, workers, "worker", 0))
    assert not distribute.is_chief(_strategy_of_task(monkeypatch, workers, "worker", 1))
    with_chief = {"chief": ["127.0.0.1:3"], **workers}
    assert distribute.is_chief(_strategy_of_task(monkeypatch, with_chief, "chief", 0))
    assert not distribute.is_chief(_strategy_of_task(monkeypatch, with_chief, "worker", 0))
    assert distribute.is_chief(tf.distribute.get_strategy())


def test_only_the_chief_writes_to_the_folder_itself(monkeypatch, tmp_path):
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert distribute.write_dir(str(tmp_path), _strategy_of_task(monkeypatch, workers, "worker", 0)) == str(tmp_path)
    worker = _strategy_of_task(monkeypatch, workers, "worker", 1)
    temporary = distribute.write_dir(str(tmp_path), worker)
    assert temporary == str(tmp_path / ".worker-temp-worker-1")
    os.makedirs(temporary)
    distribute.remove_temporary(str(tmp_path), worker)
    assert os.listdir(tmp_path) == []
