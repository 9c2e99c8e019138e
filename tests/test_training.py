"""The train -> evaluate -> export run: results, checkpoints and resume, exports, and config validation."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_RUN

from tfrank import training


def _config(path, **overrides):
    return training.TrainConfig(dataset="movielens/25m", movielens_path=path, **{**SMALL_RUN, **overrides})


def test_run_returns_val_and_test_metrics_for_each_loss(synthetic_dir, tmp_path):
    config = _config(synthetic_dir, loss=("mse", "pairwise_hinge"), model_dir=str(tmp_path))
    results = training.run(config)
    assert set(results) == {"mse", "pairwise_hinge"}
    for by_split in results.values():
        for split in ("val", "test"):
            assert set(by_split[split]) == {"ndcg@5", "mrr"}
            assert all(0.0 < value <= 1.0 for value in by_split[split].values())
    # Pointwise losses keep the tutorial's Adagrad 0.1 and their last weights; ranking losses get 1.0 and averaging.
    assert results["mse"]["learning_rate"] == pytest.approx(0.1) and results["mse"]["ema_momentum"] == 0.0
    assert results["pairwise_hinge"]["learning_rate"] == 1.0 and results["pairwise_hinge"]["ema_momentum"] == 0.99
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["pairwise_hinge"]["test"] == results["pairwise_hinge"]["test"]
    assert written["mse"]["val"] == results["mse"]["val"]
    # The lists are made once for both losses, and the time it took is reported with each.
    assert 0.0 < written["mse"]["data_seconds"] == written["pairwise_hinge"]["data_seconds"]
    events = list((tmp_path / "pairwise_hinge" / "logs").glob("events.out.tfevents.*"))
    logged = {value.tag: float(tf.make_ndarray(value.tensor)) for path in events
              for event in tf.compat.v1.train.summary_iterator(str(path)) for value in event.summary.value}
    assert logged["test/ndcg@5"] == pytest.approx(results["pairwise_hinge"]["test"]["ndcg@5"])
    assert "train/loss" in logged


def test_pairwise_hinge_learns_the_synthetic_affinity(synthetic_dir):
    trained = training.run(_config(synthetic_dir, epochs=3, num_lists_per_user=20, model="tutorial"))
    untrained = training.run(_config(synthetic_dir, epochs=0, model="tutorial"))
    assert trained["pairwise_hinge"]["test"]["ndcg@5"] > untrained["pairwise_hinge"]["test"]["ndcg@5"] + 0.02


def test_resumed_run_matches_an_uninterrupted_one(synthetic_dir, tmp_path):
    config = _config(synthetic_dir, epochs=2, model_dir=str(tmp_path / "resumed"))
    data = training.prepare_data(config)
    training.train_one(dataclasses.replace(config, epochs=1), "pairwise_hinge", data)
    resumed, _ = training.train_one(config, "pairwise_hinge", data)
    checkpoints = tf.train.get_checkpoint_state(str(tmp_path / "resumed" / "pairwise_hinge" / "checkpoints"))
    assert checkpoints.model_checkpoint_path.endswith("ckpt-2")

    straight, _ = training.train_one(dataclasses.replace(config, model_dir=str(tmp_path / "straight")),
                                     "pairwise_hinge", data)
    for resumed_weight, straight_weight in zip(resumed.weights, straight.weights):
        np.testing.assert_allclose(np.asarray(resumed_weight), np.asarray(straight_weight), atol=1e-5)


def test_finished_run_is_not_trained_again(synthetic_dir, tmp_path):
    config = _config(synthetic_dir, model_dir=str(tmp_path))
    data = training.prepare_data(config)
    first, first_results = training.train_one(config, "pairwise_hinge", data)
    again, again_results = training.train_one(config, "pairwise_hinge", data)
    assert "train_lists_per_second" in first_results and "train_lists_per_second" not in again_results
    np.testing.assert_allclose(np.asarray(first.weights[0]), np.asarray(again.weights[0]))
    assert again_results["test"] == first_results["test"]


def test_export_goes_to_versions_per_loss(synthetic_dir, tmp_path):
    results = training.run(_config(synthetic_dir, loss=("softmax", "mse"), export_dir=str(tmp_path)))
    assert results["softmax"]["export_path"] == os.path.join(str(tmp_path), "softmax", "1")
    assert sorted(os.listdir(tmp_path / "mse")) == ["1"]


def test_a_single_loss_exports_to_its_own_folder_too(synthetic_dir, tmp_path):
    results = training.run(_config(synthetic_dir, loss=("mse",), export_dir=str(tmp_path)))
    assert results["mse"]["export_path"] == os.path.join(str(tmp_path), "mse", "1")
    assert sorted(os.listdir(tmp_path)) == ["mse"]


def test_training_lists_are_the_same_for_the_same_seed(synthetic_dir):
    config = _config(synthetic_dir)
    first = training.prepare_data(config).train_batches(seed=1, epoch=1)
    second = training.prepare_data(config).train_batches(seed=1, epoch=1)
    other_epoch = training.prepare_data(config).train_batches(seed=1, epoch=2)
    first_ids = np.concatenate([f["movie_id"].numpy().ravel() for f, _ in first])
    assert np.array_equal(first_ids, np.concatenate([f["movie_id"].numpy().ravel() for f, _ in second]))
    assert not np.array_equal(first_ids, np.concatenate([f["movie_id"].numpy().ravel() for f, _ in other_epoch]))


# Logical devices must be set before TensorFlow starts, so the two-replica run gets a process of its own.
_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfrank import training
    config = training.TrainConfig(dataset="movielens/25m", movielens_path=sys.argv[1], loss=("softmax",),
                                  num_lists_per_user=4, batch_size=256, epochs=2, verbose=0, metrics=("ndcg@5",))
    data = training.prepare_data(config)
    one, one_results = training.train_one(config, "softmax", data)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two, two_results = training.train_one(config, "softmax", data, strategy)
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "max_weight_difference": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                     for a, b in zip(one.weights, two.weights)),
        "moved": float(np.max(np.abs(np.asarray(two.weights[2])))),
        "ndcg": [one_results["test"]["ndcg@5"], two_results["test"]["ndcg@5"]],
        "learning_rate": two_results["learning_rate"],
    }))
""")


def test_two_replica_mirrored_training_equals_one_replica(synthetic_dir):
    # Softmax with weight averaging: a ranking loss that is a mean over the lists, exercising the moving average too.
    # Each replica takes half of every batch (800 lists: batches of 256 and a last one of 32 split evenly) and the
    # gradients are summed, so two replicas must train the same weights as one.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT, synthetic_dir], capture_output=True, text=True,
                             env=env, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["moved"] > 0.0 and report["max_weight_difference"] < 1e-5
    assert report["ndcg"][0] == pytest.approx(report["ndcg"][1], abs=1e-6)
    assert report["learning_rate"] == 1.0


@pytest.mark.parametrize("overrides, message", [
    (dict(loss=("no_such_loss",)), "loss='no_such_loss'"),
    (dict(loss=("mse", "mse")), "loss=mse,mse: names a loss twice"),
    (dict(metrics=("ndcg@0",)), "metrics='ndcg@0'"),
    (dict(list_size=0), "list_size=0: must be >= 1"),
    (dict(epochs=-1), "epochs=-1: must be >= 0"),
    (dict(optimizer="rmsprop"), "optimizer='rmsprop': must be one of adagrad, adam, sgd"),
    (dict(dataset="movielens/10k"), "dataset='movielens/10k'"),
    (dict(learning_rate=0.0), "learning_rate=0.0: must be a finite number > 0"),
    (dict(learning_rate=float("inf")), "learning_rate=inf: must be a finite number > 0"),
    (dict(movielens_path="/no/such/dir"), "movielens_path='/no/such/dir'"),
])
def test_bad_config_names_the_field(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        training.TrainConfig(**overrides).validate()


@pytest.mark.parametrize("overrides", [
    dict(loss=("softmax",), optimizer="sgd", learning_rate=1e30, ema_momentum=0.0),
    dict(loss=("mse",), optimizer="sgd", learning_rate=1e20, ema_momentum=0.0, epochs=2),
])
def test_diverging_run_stops_naming_the_loss_and_saves_nothing(synthetic_dir, tmp_path, overrides):
    config = _config(synthetic_dir, model_dir=str(tmp_path / "model"), export_dir=str(tmp_path / "export"),
                     **overrides)
    with pytest.raises(training.TrainingDivergedError) as error:
        training.run(config)
    message = str(error.value)
    assert f"[{config.loss[0]}]" in message and "epoch 1" in message and "lower --learning_rate" in message
    assert "\n" not in message
    assert not list((tmp_path / "model").glob("*/checkpoints/ckpt-*"))
    assert not (tmp_path / "export").exists() or not list((tmp_path / "export").rglob("saved_model.pb"))
    assert not (tmp_path / "model" / "results.json").exists()


def test_weights_that_become_infinite_stop_the_run_before_the_checkpoint(synthetic_dir, tmp_path, monkeypatch):
    # The loss is computed before the step's update, so a last update to Inf shows only in the weights.
    def fit_epoch_to_infinity(trainer, *args, **kwargs):
        trainer.model.trainable_variables[0].assign(tf.fill(trainer.model.trainable_variables[0].shape, np.inf))
        return 0.5, 1.0

    monkeypatch.setattr(training._Trainer, "fit_epoch", fit_epoch_to_infinity)
    with pytest.raises(training.TrainingDivergedError, match=r"a weight became NaN or infinite at the end of epoch 1"):
        training.run(_config(synthetic_dir, model_dir=str(tmp_path)))
    assert not list(tmp_path.glob("*/checkpoints/ckpt-*"))


def test_same_config_gives_bit_identical_results_and_leaves_determinism_as_it_was(synthetic_dir):
    from tensorflow.python.framework import config as tf_config

    config = _config(synthetic_dir, loss=("softmax",), epochs=2)
    first, second = training.run(config), training.run(config)
    assert first["softmax"]["test"] == second["softmax"]["test"]
    assert first["softmax"]["val"] == second["softmax"]["val"]
    assert not tf_config.is_op_determinism_enabled()


def test_results_json_describes_only_the_run_that_wrote_it(synthetic_dir, tmp_path):
    training.run(_config(synthetic_dir, loss=("mse", "pairwise_hinge"), model_dir=str(tmp_path / "model")))
    results = training.run(_config(synthetic_dir, loss=("softmax",), model_dir=str(tmp_path / "model"),
                                   export_dir=str(tmp_path / "export"), overwrite=True))
    written = json.loads((tmp_path / "model" / "results.json").read_text())
    assert set(written) == {"softmax"}
    assert written["softmax"]["export_path"] == results["softmax"]["export_path"] == str(
        tmp_path / "export" / "softmax" / "1")
    assert written["softmax"]["epochs"] == 1


def _scalars(log_dir):
    """``{tag: [(step, value), ...]}`` read back from the TensorBoard event files in ``log_dir``."""
    scalars = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return scalars


def test_tensorboard_has_validation_curves_and_train_loss_per_epoch(synthetic_dir, tmp_path):
    results = training.run(_config(synthetic_dir, epochs=3, model_dir=str(tmp_path)))
    scalars = _scalars(tmp_path / "pairwise_hinge" / "logs")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [step for step, _ in scalars["val/ndcg@5"]] == [1, 2, 3]
    assert [step for step, _ in scalars["test/ndcg@5"]] == [3]
    # The curves are of the weights that are evaluated and exported (the moving average), so they end at the result.
    assert scalars["val/ndcg@5"][-1][1] == pytest.approx(results["pairwise_hinge"]["val"]["ndcg@5"])
    assert scalars["test/mrr"][-1][1] == pytest.approx(results["pairwise_hinge"]["test"]["mrr"])
    assert len({value for _, value in scalars["train/loss"]}) == 3


def test_synthetic_dataset_needs_no_files_and_follows_the_seed(monkeypatch):
    monkeypatch.delenv("TFRANK_MOVIELENS_DIR", raising=False)
    config = training.TrainConfig(dataset="synthetic", num_lists_per_user=2, seed=5)
    first, again = training.prepare_data(config), training.prepare_data(config)
    other_seed = training.prepare_data(dataclasses.replace(config, seed=6))
    assert len(first.user_vocabulary) == 943 and len(first.movie_vocabulary) > 1000
    assert first.num_train_lists == 943 * 2
    assert np.array_equal(first.train_labels.numpy(), again.train_labels.numpy())
    assert not np.array_equal(first.train_features["movie_id"].numpy(), other_seed.train_features["movie_id"].numpy())


def test_model_is_part_of_the_run_identity(synthetic_dir, tmp_path):
    training.run(_config(synthetic_dir, model="tutorial", model_dir=str(tmp_path)))
    with pytest.raises(training.RunMismatchError, match=r"--model=features \(the run has tutorial\)"):
        training.run(_config(synthetic_dir, model="features", model_dir=str(tmp_path)))


def test_a_run_recorded_before_the_model_flag_resumes_as_the_tutorial_model(synthetic_dir, tmp_path):
    training.run(_config(synthetic_dir, model="tutorial", model_dir=str(tmp_path)))
    path = tmp_path / training.RUN_CONFIG_FILE
    recorded = json.loads(path.read_text())
    del recorded["model"]
    path.write_text(json.dumps(recorded))
    results = training.run(_config(synthetic_dir, model="tutorial", model_dir=str(tmp_path), epochs=2))
    assert results["pairwise_hinge"]["epochs"] == 2
    with pytest.raises(training.RunMismatchError, match=r"--model=features \(the run has tutorial\)"):
        training.run(_config(synthetic_dir, model="features", model_dir=str(tmp_path), epochs=2))


def test_feature_model_run_exports_and_serves_its_test_scores(synthetic_dir, tmp_path):
    config = _config(synthetic_dir, model="features", export_dir=str(tmp_path / "export"))
    results = training.run(config)
    loaded = tf.saved_model.load(results["pairwise_hinge"]["export_path"])
    data = training.prepare_data(config)
    model = training.build_model(config, data)
    features, _ = next(iter(data.test))
    served = loaded.signatures["serving_default"](user_id=features["user_id"], movie_id=features["movie_id"])
    assert served["scores"].shape == features["movie_id"].shape
    assert np.isfinite(served["scores"].numpy()).all()
    # The export carries the feature tables built at training time.
    np.testing.assert_array_equal(
        [v.numpy() for v in loaded.model_variables if v.shape == model.movie_table.shape][0],
        model.movie_table.numpy())
