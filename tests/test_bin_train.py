"""bin/train.py and bin/rank.py as users run them: real flags, real MovieLens files, real exit codes."""

import dataclasses
import fcntl
import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest
from absl import flags
from conftest import REPO_ROOT

from tfrank import losses, metrics, training
from tfrank.data import movielens

TRAIN = str(REPO_ROOT / "bin" / "train.py")
RANK = str(REPO_ROOT / "bin" / "rank.py")


def _run(args, env_overrides=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(env_overrides or {})
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def trained(movielens_dir, tmp_path_factory):
    """One short tutorial-shaped run of both losses, exported; shared by the tests below."""
    root = tmp_path_factory.mktemp("train")
    process = _run([TRAIN, "--model=tutorial", "--loss=mse,pairwise_hinge", "--epochs=1", "--num_lists_per_user=5",
                    f"--movielens_path={movielens_dir}", f"--model_dir={root / 'model'}",
                    f"--export_dir={root / 'export'}"])
    assert process.returncode == 0, process.stderr
    return root, process


def test_train_writes_results_for_every_loss_and_metric(trained):
    root, process = trained
    results = json.loads((root / "model" / "results.json").read_text())
    assert set(results) == {"mse", "pairwise_hinge"}
    for loss in results:
        for split in ("val", "test"):
            assert set(results[loss][split]) == {"ndcg@1", "ndcg@3", "ndcg@5", "mrr", "map"}
            # Random scores give about 0.887 nDCG@5 on this protocol; even one short epoch is in that range.
            assert 0.8 < results[loss][split]["ndcg@5"] <= 1.0
    table = process.stdout.splitlines()
    assert any(line.split()[:2] == ["pairwise_hinge", "test"] for line in table)


def test_same_command_gives_bit_identical_metrics(trained, movielens_dir, tmp_path):
    root, _ = trained
    process = _run([TRAIN, "--model=tutorial", "--loss=mse,pairwise_hinge", "--epochs=1", "--num_lists_per_user=5",
                    f"--movielens_path={movielens_dir}", f"--model_dir={tmp_path / 'model'}"])
    assert process.returncode == 0, process.stderr
    first = json.loads((root / "model" / "results.json").read_text())
    again = json.loads((tmp_path / "model" / "results.json").read_text())
    for loss in ("mse", "pairwise_hinge"):
        assert again[loss]["val"] == first[loss]["val"] and again[loss]["test"] == first[loss]["test"]


def test_progress_to_a_pipe_is_one_plain_line_per_epoch(trained):
    _, process = trained
    assert "\r" not in process.stdout and "\x1b" not in process.stdout
    epochs = [line for line in process.stdout.splitlines() if " epoch " in line]
    assert [line.split()[:3] for line in epochs] == [["[mse]", "epoch", "1/1"], ["[pairwise_hinge]", "epoch", "1/1"]]
    assert all("loss" in line and "val ndcg@5" in line for line in epochs)


def test_train_prints_no_tensorflow_startup_noise(trained):
    _, process = trained
    assert "cuda" not in process.stderr.lower() and "absl::InitializeLog" not in process.stderr
    assert "Assets written" not in process.stdout + process.stderr  # SavedModel's INFO logging


def test_train_exports_one_version_per_loss(trained):
    root, _ = trained
    for loss in ("mse", "pairwise_hinge"):
        assert sorted(os.listdir(root / "export" / loss)) == ["1"]
        assert (root / "export" / loss / "1" / "saved_model.pb").is_file()


def test_rank_prints_movies_best_first_with_titles(trained, movielens_dir):
    root, _ = trained
    process = _run([RANK, f"--export_dir={root / 'export' / 'pairwise_hinge'}", "--user_id=42",
                    "--movie_ids=409,237,131,941,543", f"--movielens_path={movielens_dir}"])
    assert process.returncode == 0, process.stderr
    lines = [line for line in process.stdout.splitlines() if line.strip()]
    assert any("Jerry Maguire (1996)" in line for line in lines)
    scores = [float(token) for line in lines for token in line.split() if _is_float(token) and "." in token]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)


def _is_float(token):
    try:
        float(token)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("flag, expected", [
    ("--loss=no_such_loss", "--loss='no_such_loss'"),
    ("--list_size=0", "--list_size=0: must be >= 1"),
    ("--epochs=-1", "--epochs=-1: must be >= 0"),
    ("--optimizer=rmsprop", "--optimizer='rmsprop': must be one of adagrad, adam, sgd"),
    ("--movielens_path=/no/such/dir", "--movielens_path='/no/such/dir'"),
    ("--distribution_strategy=horovod", "--distribution_strategy='horovod': must be one of off, one_device"),
])
def test_bad_flag_exits_with_one_line_naming_it(flag, expected):
    process = _run([TRAIN, flag])
    assert process.returncode != 0
    assert process.stderr.strip().splitlines() == [process.stderr.strip()]
    assert expected in process.stderr and "Traceback" not in process.stderr


@pytest.fixture(scope="module")
def train_main():
    """bin/train.py imported once (absl flags can be defined only once per process)."""
    sys.path.insert(0, str(REPO_ROOT / "bin"))  # as when the script runs: its folder first on the path
    spec = importlib.util.spec_from_file_location("tfrank_bin_train", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def finished(status=0):  # main ends a successful run with os._exit, which would end pytest with status 0
        raise AssertionError(f"bin/train.py main finished a run (status {status}) instead of failing")

    exit_without_teardown = module._quiet_tensorflow.exit_without_teardown
    module._quiet_tensorflow.exit_without_teardown = finished
    yield module.main
    module._quiet_tensorflow.exit_without_teardown = exit_without_teardown
    flags.FLAGS.unparse_flags()


def test_offline_tfds_fails_at_once_naming_the_local_options(train_main, monkeypatch, tmp_path):
    monkeypatch.delenv("TFRANK_MOVIELENS_DIR", raising=False)
    monkeypatch.setattr(movielens, "_network_reachable", lambda: False)
    argv = flags.FLAGS(["train.py", "--movielens_path=", f"--tfds_data_dir={tmp_path}", "--epochs=1"])
    with pytest.raises(SystemExit) as exit_info:
        train_main(argv)
    message = str(exit_info.value.code)
    assert message.startswith("train.py: error: TFDS dataset movielens/100k-ratings is not prepared")
    assert "--movielens_path" in message and "TFRANK_MOVIELENS_DIR" in message and "\n" not in message


def _main_error(train_main, *args):
    """The one-line message that bin/train.py's main exits with for ``args`` (absl flags reset first)."""
    flags.FLAGS.unparse_flags()
    argv = flags.FLAGS(["train.py", *args])
    with pytest.raises(SystemExit) as exit_info:
        train_main(argv)
    message = str(exit_info.value.code)
    assert message.startswith("train.py: error: ") and "\n" not in message
    return message


def test_multi_worker_without_tf_config_is_one_line_naming_it(train_main, monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    message = _main_error(train_main, "--dataset=synthetic", "--distribution_strategy=multi_worker_mirrored",
                          f"--model_dir={tmp_path / 'model'}")
    assert "distribution_strategy=multi_worker_mirrored: TF_CONFIG is not set" in message
    assert not (tmp_path / "model").exists()


def test_offline_tfds_error_also_names_the_synthetic_dataset(train_main, monkeypatch, tmp_path):
    monkeypatch.delenv("TFRANK_MOVIELENS_DIR", raising=False)
    monkeypatch.setattr(movielens, "_network_reachable", lambda: False)
    message = _main_error(train_main, "--movielens_path=", f"--tfds_data_dir={tmp_path}")
    assert "--dataset=synthetic" in message and "source=PATH" not in message


def test_zero_epochs_is_refused_with_the_reason(train_main):
    assert "--epochs=0: must be >= 1" in _main_error(train_main, "--epochs=0", "--dataset=synthetic")


def test_malformed_ratings_line_is_one_line_naming_the_file(train_main, tmp_path, movielens_dir):
    (tmp_path / "u.data").write_text("1\t2\t5\t881250949\nnot a rating line\n")
    (tmp_path / "u.item").write_text((movielens_dir / "u.item").read_text(encoding="latin-1"), encoding="latin-1")
    message = _main_error(train_main, f"--movielens_path={tmp_path}")
    assert str(tmp_path / "u.data") in message and "line 2" in message


def test_model_dir_in_use_is_one_line(train_main, tmp_path):
    lock = tmp_path / "run.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, as by a live run
        message = _main_error(train_main, "--dataset=synthetic", f"--model_dir={tmp_path}")
    assert f"--model_dir={tmp_path} is in use by process {os.getpid()}" in message


def test_rerun_with_other_flags_is_one_line_naming_them(train_main, tmp_path):
    (tmp_path / "run_config.json").write_text(json.dumps(
        {**training._identity(training.TrainConfig(dataset="synthetic")), "epochs": 5}))
    (tmp_path / "results.json").write_text("{}")  # the run saved something, so it is one to continue
    message = _main_error(train_main, "--dataset=synthetic", f"--model_dir={tmp_path}", "--embedding_dim=8")
    assert "--embedding_dim=8 (the run has 32)" in message and "--overwrite" in message


def test_help_lists_losses_metrics_and_defaults():
    process = _run([TRAIN, "--help"])
    assert process.returncode == 0, process.stderr
    for name in losses.names() + metrics.names():
        assert name in process.stdout, name
    assert "(default: 'pairwise_hinge')" in process.stdout and "(default: '1024')" in process.stdout
    assert "<export_dir>/<loss>/<version>" in " ".join(process.stdout.split())


def test_diverging_training_exits_non_zero_with_one_line_and_exports_nothing(movielens_dir, tmp_path):
    process = _run([TRAIN, "--loss=softmax", "--optimizer=sgd", "--learning_rate=1e30", "--ema_momentum=0",
                    "--epochs=1", "--num_lists_per_user=2", f"--movielens_path={movielens_dir}",
                    f"--model_dir={tmp_path / 'model'}", f"--export_dir={tmp_path / 'export'}"])
    assert process.returncode != 0
    assert process.stderr.strip().splitlines() == [process.stderr.strip()]
    assert "[softmax] the training loss became nan at epoch 1" in process.stderr
    assert "lower --learning_rate" in process.stderr
    assert not (tmp_path / "export").exists() and not list((tmp_path / "model").rglob("ckpt-*"))


def test_synthetic_comparison_needs_no_data_and_beats_random_scores(tmp_path):
    # Untrained (random) models score test nDCG@5 0.878 on these lists (training.run with epochs=0).
    env = {k: v for k, v in os.environ.items() if k not in ("TFRANK_MOVIELENS_DIR", "TF_CPP_MIN_LOG_LEVEL")}
    process = subprocess.run([sys.executable, TRAIN, "--model=tutorial", "--loss=mse,pairwise_hinge",
                              "--dataset=synthetic"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert process.returncode == 0, process.stderr
    test_rows = {line.split()[0]: [float(value) for value in line.split()[2:]]
                 for line in process.stdout.splitlines() if line.split()[1:2] == ["test"]}
    ndcg5 = {loss: row[2] for loss, row in test_rows.items()}
    assert set(ndcg5) == {"mse", "pairwise_hinge"}
    assert ndcg5["pairwise_hinge"] > 0.92 and ndcg5["mse"] > 0.89
    assert ndcg5["pairwise_hinge"] != ndcg5["mse"]
    assert "nothing was saved: pass --model_dir" in process.stdout
    assert os.listdir(tmp_path) == []


def test_missing_ratings_file_names_the_flag_not_the_python_argument(train_main, tmp_path):
    message = _main_error(train_main, f"--movielens_path={tmp_path}")
    assert f"u.data not found in {tmp_path}" in message and "--movielens_path" in message
    assert "source=" not in message


def test_every_config_field_is_a_flag_of_the_same_name_and_default(train_main):
    for field in dataclasses.fields(training.TrainConfig):
        default = flags.FLAGS[field.name].default
        if field.name == "movielens_path":
            assert default == os.environ.get("TFRANK_MOVIELENS_DIR")
        else:
            assert (tuple(default) if isinstance(default, list) else default) == field.default, field.name


def test_unwritable_model_dir_is_one_line(train_main, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert str(blocker) in _main_error(train_main, "--dataset=synthetic", f"--model_dir={blocker / 'model'}")
