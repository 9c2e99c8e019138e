"""A model_dir holds one run: resuming only what was asked for, the lock, and damaged checkpoints."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_RUN

from tfrank import training


def _config(path, model_dir, **overrides):
    return training.TrainConfig(dataset="movielens/25m", movielens_path=path, model_dir=str(model_dir),
                                **{**SMALL_RUN, **overrides})


def _checkpoints(model_dir, loss="pairwise_hinge"):
    return sorted(name for name in os.listdir(model_dir / loss / "checkpoints") if name.endswith(".index"))


def _scalar_events(model_dir, loss="pairwise_hinge"):
    return sum(len(event.summary.value) for path in (model_dir / loss / "logs").glob("events.out.tfevents.*")
               for event in tf.compat.v1.train.summary_iterator(str(path)))


def test_rerun_with_other_flags_names_each_difference_and_the_fix(synthetic_dir, tmp_path):
    training.run(_config(synthetic_dir, tmp_path))
    with pytest.raises(training.RunMismatchError) as error:
        training.run(_config(synthetic_dir, tmp_path, learning_rate=0.5, seed=7, loss=("mse",), epochs=3))
    message = str(error.value)
    assert "--learning_rate=0.5 (the run has unset)" in message and "--seed=7 (the run has 42)" in message
    assert "--loss=mse (the run has pairwise_hinge)" in message and "epochs" not in message.split(";")[0]
    assert "--overwrite" in message and "--model_dir" in message and "\n" not in message
    assert _checkpoints(tmp_path) == ["ckpt-1.index"]  # nothing was trained or removed


def test_fewer_epochs_than_the_checkpoints_reached_is_refused(synthetic_dir, tmp_path):
    training.run(_config(synthetic_dir, tmp_path, epochs=2))
    with pytest.raises(training.RunMismatchError, match="--epochs=1: .* already trained pairwise_hinge for 2 epochs"):
        training.run(_config(synthetic_dir, tmp_path, epochs=1))


def test_more_epochs_continue_the_run_and_a_finished_run_is_not_redone(synthetic_dir, tmp_path, capsys):
    export_dir = tmp_path / "export"
    model_dir = tmp_path / "model"
    training.run(_config(synthetic_dir, model_dir, export_dir=str(export_dir)))
    continued = training.run(_config(synthetic_dir, model_dir, epochs=2, export_dir=str(export_dir)))
    assert _checkpoints(model_dir) == ["ckpt-1.index", "ckpt-2.index"]
    assert continued["pairwise_hinge"]["epochs"] == 2
    assert continued["pairwise_hinge"]["export_path"] == str(export_dir / "pairwise_hinge" / "2")  # a new model
    events = _scalar_events(model_dir)

    capsys.readouterr()
    again = training.run(_config(synthetic_dir, model_dir, epochs=2, export_dir=str(export_dir), verbose=1))
    assert "already trained for 2 epochs" in capsys.readouterr().out
    assert again["pairwise_hinge"]["test"] == continued["pairwise_hinge"]["test"]
    assert sorted(os.listdir(export_dir / "pairwise_hinge")) == ["1", "2"]  # no duplicate export
    assert again["pairwise_hinge"]["export_path"] == str(export_dir / "pairwise_hinge" / "2")
    assert _scalar_events(model_dir) == events  # no duplicate TensorBoard scalars
    assert json.loads((model_dir / "results.json").read_text())["pairwise_hinge"]["test"] == again[
        "pairwise_hinge"]["test"]


def test_overwrite_starts_the_run_again(synthetic_dir, tmp_path):
    training.run(_config(synthetic_dir, tmp_path, epochs=2, loss=("mse", "pairwise_hinge")))
    results = training.run(_config(synthetic_dir, tmp_path, learning_rate=0.5, overwrite=True))
    assert _checkpoints(tmp_path) == ["ckpt-1.index"]
    assert not (tmp_path / "mse").exists()
    assert json.loads((tmp_path / "run_config.json").read_text())["learning_rate"] == 0.5
    assert results["pairwise_hinge"]["learning_rate"] == 0.5
    assert _scalar_events(tmp_path) == 1 + 2 + 2  # train/loss, val and test metrics of one epoch


def test_checkpoints_without_a_run_config_are_not_resumed(synthetic_dir, tmp_path):
    training.run(_config(synthetic_dir, tmp_path))
    os.remove(tmp_path / "run_config.json")
    with pytest.raises(training.RunMismatchError, match="has checkpoints of pairwise_hinge but no run_config.json"):
        training.run(_config(synthetic_dir, tmp_path))


# A process that holds the lock of a model_dir until its stdin closes.
_HOLDER = textwrap.dedent("""
    import sys
    from tfrank import training
    with training._locked(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()
""")


def test_second_process_on_a_model_dir_stops_at_once(synthetic_dir, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(training.ModelDirLockedError) as error:
            training.run(_config(synthetic_dir, tmp_path))
        message = str(error.value)
        assert f"in use by process {holder.pid} on {socket.gethostname()}" in message and "\n" not in message
        assert not (tmp_path / "run_config.json").exists()
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
    assert not (tmp_path / training.LOCK_FILE).exists()  # the holder released it on exit


def test_stale_lock_of_a_dead_process_is_taken_over(synthetic_dir, tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / training.LOCK_FILE).write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname()}))
    training.run(_config(synthetic_dir, tmp_path))
    assert f"taking over the stale lock {tmp_path / training.LOCK_FILE} of process {dead_pid}" in (
        capsys.readouterr().err)
    assert _checkpoints(tmp_path) == ["ckpt-1.index"]
    assert not (tmp_path / training.LOCK_FILE).exists()


def test_lock_naming_a_reused_pid_is_taken_over_once_it_is_unlocked(synthetic_dir, tmp_path, capsys):
    # A restarted container often gets its old pid back: an unlocked file naming a live pid is still stale.
    lock = tmp_path / training.LOCK_FILE
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    training.run(_config(synthetic_dir, tmp_path))
    assert f"taking over the stale lock {lock} of process {os.getpid()}" in capsys.readouterr().err
    assert _checkpoints(tmp_path) == ["ckpt-1.index"]


@pytest.mark.parametrize("content", ["[1, 2]", "42"])
def test_run_config_that_is_no_json_object_is_a_one_line_error(synthetic_dir, tmp_path, content):
    training.run(_config(synthetic_dir, tmp_path))
    (tmp_path / training.RUN_CONFIG_FILE).write_text(content)
    with pytest.raises(training.CheckpointError) as error:
        training.run(_config(synthetic_dir, tmp_path, epochs=2))
    assert "does not hold a JSON object" in str(error.value) and "\n" not in str(error.value)


def test_overwrite_removes_only_loss_folders_a_damaged_config_names(synthetic_dir, tmp_path):
    model_dir = tmp_path / "model"
    training.run(_config(synthetic_dir, model_dir))
    (tmp_path / "keep").mkdir()
    (model_dir / training.RUN_CONFIG_FILE).write_text(json.dumps({"loss": ["../keep", "pairwise_hinge"]}))
    training.run(_config(synthetic_dir, model_dir, overwrite=True))
    assert (tmp_path / "keep").is_dir() and _checkpoints(model_dir) == ["ckpt-1.index"]


def test_evaluating_each_epoch_in_a_model_dir_does_not_change_the_trained_weights(synthetic_dir, tmp_path):
    # With a model_dir each epoch is evaluated with the averaged weights; the training itself must not notice.
    config = _config(synthetic_dir, tmp_path, epochs=2, loss=("softmax",))
    data = training.prepare_data(config)
    with_evaluation, _ = training.train_one(config, "softmax", data)
    without, _ = training.train_one(dataclasses.replace(config, model_dir=None), "softmax", data)
    for first, second in zip(with_evaluation.trainable_variables, without.trainable_variables):
        np.testing.assert_array_equal(first.numpy(), second.numpy())


def test_garbled_checkpoint_index_resumes_from_the_newest_checkpoint(synthetic_dir, tmp_path, capsys):
    training.run(_config(synthetic_dir, tmp_path, epochs=2))
    (tmp_path / "pairwise_hinge" / "checkpoints" / "checkpoint").write_text("model_checkpoint_path: {{{ garbage")
    results = training.run(_config(synthetic_dir, tmp_path, epochs=3, verbose=1))
    captured = capsys.readouterr()
    index = tmp_path / "pairwise_hinge" / "checkpoints" / "checkpoint"
    assert f"the checkpoint index {index} is garbled" in captured.err
    assert "resuming after epoch 2" in captured.out and "epoch 1/3" not in captured.out
    assert results["pairwise_hinge"]["epochs"] == 3
    assert tf.train.get_checkpoint_state(str(index.parent)).model_checkpoint_path.endswith("ckpt-3")


def test_truncated_checkpoint_falls_back_to_the_newest_intact_one(synthetic_dir, tmp_path, capsys):
    training.run(_config(synthetic_dir, tmp_path, epochs=2))
    data_file = next((tmp_path / "pairwise_hinge" / "checkpoints").glob("ckpt-2.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:100])
    results = training.run(_config(synthetic_dir, tmp_path, epochs=2, verbose=1))
    captured = capsys.readouterr()
    damaged = [line for line in captured.err.splitlines() if "is damaged" in line]
    assert len(damaged) == 1 and str(tmp_path / "pairwise_hinge" / "checkpoints" / "ckpt-2") in damaged[0]
    assert "resuming after epoch 1" in captured.out
    assert results["pairwise_hinge"]["epochs"] == 2
    assert _checkpoints(tmp_path) == ["ckpt-1.index", "ckpt-2.index"]


def test_no_intact_checkpoint_is_an_error_not_a_restart(synthetic_dir, tmp_path):
    training.run(_config(synthetic_dir, tmp_path, epochs=1))
    index_file = tmp_path / "pairwise_hinge" / "checkpoints" / "ckpt-1.index"
    index_file.write_bytes(b"\0" * 10)
    with pytest.raises(training.CheckpointError, match="no checkpoint in .* can be restored .*--overwrite"):
        training.run(_config(synthetic_dir, tmp_path, epochs=2))
    assert _checkpoints(tmp_path) == ["ckpt-1.index"]


def test_a_run_that_saved_nothing_does_not_block_its_corrected_rerun(synthetic_dir, tmp_path):
    with pytest.raises(training.TrainingDivergedError):
        training.run(_config(synthetic_dir, tmp_path, loss=("softmax",), optimizer="sgd", learning_rate=1e30,
                             ema_momentum=0.0))
    results = training.run(_config(synthetic_dir, tmp_path, loss=("softmax",), optimizer="sgd", learning_rate=0.1,
                                   ema_momentum=0.0))
    assert results["softmax"]["learning_rate"] == pytest.approx(0.1)
    assert json.loads((tmp_path / "run_config.json").read_text())["learning_rate"] == 0.1


def test_finished_run_asked_for_other_metrics_is_evaluated_but_not_exported_again(synthetic_dir, tmp_path):
    export_dir = tmp_path / "export"
    first = training.run(_config(synthetic_dir, tmp_path / "model", export_dir=str(export_dir)))
    again = training.run(_config(synthetic_dir, tmp_path / "model", export_dir=str(export_dir),
                                 metrics=("ndcg@5", "map")))
    assert again["pairwise_hinge"]["test"]["ndcg@5"] == first["pairwise_hinge"]["test"]["ndcg@5"]
    assert 0.0 < again["pairwise_hinge"]["test"]["map"] <= 1.0
    assert sorted(os.listdir(export_dir / "pairwise_hinge")) == ["1"]
    assert again["pairwise_hinge"]["export_path"] == str(export_dir / "pairwise_hinge" / "1")
