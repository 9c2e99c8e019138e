"""bin/train.py on TF Ranking's data (--dataset=libsvm|elwc) and the ELWC serving contract of its SavedModels.

TF Ranking's example files have random features: a run here trains and evaluates on the same lists (vali.txt, the
only lists in the repo), so beating random scores shows the pipeline learns, not that it generalises.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT
from test_export import _QUIET_ENV, _meta_graph, serve_binary  # noqa: F401  (serve_binary is a fixture)

from tfrank import dnn_models, export, file_input, metrics, training
from tfrank.data import elwc, read_libsvm
from tfrank.ops import PADDING_LABEL, PADDING_SCORE

TRAIN = str(REPO_ROOT / "bin" / "train.py")
DATA = REPO_ROOT / "tests" / "data" / "tf-ranking-examples"
LIBSVM_FILE = str(DATA / "vali.txt")
ELWC_FILE = str(DATA / "vali_numerical_elwc.tfrecord")
NUM_FEATURES = 136


def _run(args):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env, timeout=600)


def _file_args(dataset: str, path: str) -> list:
    return [f"--dataset={dataset}", f"--train_path={path}", f"--valid_path={path}", f"--test_path={path}",
            f"--num_features={NUM_FEATURES}"]


def _vali_lists() -> tuple:
    """vali.txt's lists as numpy: labels [lists, 9] (-1 padded) and features [lists, 9, 136]."""
    features, labels = next(iter(read_libsvm(LIBSVM_FILE, NUM_FEATURES, batch_size=100,
                                             dense_feature_name="dense")))
    return labels.to_tensor(PADDING_LABEL).numpy(), features["dense"].to_tensor(0.0).numpy()


def _ndcg5(labels: np.ndarray, scores: np.ndarray) -> float:
    metric = metrics.get("ndcg@5")
    metric.update_state(tf.constant(labels, tf.float32), tf.constant(scores, tf.float32))
    return float(metric.result())


def _random_ndcg5(labels: np.ndarray, draws: int = 300) -> float:
    """The mean nDCG@5 of random scores over ``draws`` seeded draws (padded items keep PADDING_SCORE)."""
    rng = np.random.default_rng(0)
    values = []
    for _ in range(draws):
        scores = np.where(labels >= 0, rng.uniform(size=labels.shape), PADDING_SCORE)
        values.append(_ndcg5(labels, scores))
    return float(np.mean(values))


# A process that loads an export with TensorFlow alone (tfrank is never imported) and scores serialized ELWC read
# from a TFRecord file, through the signatures and through a graph-mode session (TF Serving's and the C API's loader).
_SERVE_WITHOUT_TFRANK = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    export_path, records_path = sys.argv[1], sys.argv[2]
    records = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(records_path)])
    loaded = tf.saved_model.load(export_path)
    result = {"signatures": sorted(loaded.signatures), "feature_names": [n.decode() for n in
              loaded.feature_names.numpy().tolist()]}
    for name in ("serving_default", "tensorflow/serving/predict"):
        outputs = loaded.signatures[name](inputs=records)
        result[name] = outputs["outputs"].numpy().tolist()
        result[name + ":scores"] = outputs["scores"].numpy().tolist()
    items = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(sys.argv[3])])
    result["regress"] = loaded.signatures["tensorflow/serving/regress"](inputs=items)["outputs"].numpy().tolist()
    with tf.compat.v1.Graph().as_default(), tf.compat.v1.Session() as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_path)
        signature = meta.signature_def["serving_default"]
        result["session"] = session.run(signature.outputs["outputs"].name,
                                        {signature.inputs["inputs"].name: records.numpy()}).tolist()
    result["tfrank_imported"] = any(name.split(".")[0] == "tfrank" for name in sys.modules)
    print(json.dumps(result))
""")


def _serve_without_tfrank(export_path: str, records_path: str, tmp_path) -> dict:
    """What the export gives for the ELWC lists in ``records_path``, their items alone for ``regress``."""
    script = tmp_path / "serve.py"
    script.write_text(_SERVE_WITHOUT_TFRANK)
    items_path = str(tmp_path / "items.tfrecord")
    with tf.io.TFRecordWriter(items_path) as writer:
        for record in tf.data.TFRecordDataset(records_path):
            for item in elwc.elwc_message_class().FromString(record.numpy()).examples:
                writer.write(item.SerializeToString())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    process = subprocess.run([sys.executable, str(script), export_path, records_path, items_path], capture_output=True,
                             text=True, env=env, cwd=str(tmp_path), timeout=600)
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def vali_labels() -> np.ndarray:
    return _vali_lists()[0]


@pytest.fixture(scope="module", params=[file_input.LIBSVM, file_input.ELWC])
def trained(request, tmp_path_factory):
    """One short run per dataset on TF Ranking's vali lists, with results.json and an export."""
    dataset = request.param
    root = tmp_path_factory.mktemp(dataset)
    path = LIBSVM_FILE if dataset == file_input.LIBSVM else ELWC_FILE
    # libsvm: training lists cut to 6 items (the longest has 9); evaluation lists stay whole.
    list_size = 6 if dataset == file_input.LIBSVM else 10
    process = _run([TRAIN, *_file_args(dataset, path), f"--list_size={list_size}", "--batch_size=3", "--epochs=10",
                    "--loss=softmax", f"--model_dir={root / 'model'}", f"--export_dir={root / 'export'}"])
    assert process.returncode == 0, process.stderr
    results = json.loads((root / "model" / "results.json").read_text())["softmax"]
    return dataset, root, results


def test_trained_model_beats_random_scores_on_its_lists(trained, vali_labels):
    _, _, results = trained
    random_ndcg = _random_ndcg5(vali_labels)
    test_ndcg = results["test"]["ndcg@5"]
    assert np.isfinite(test_ndcg) and test_ndcg <= 1.0
    assert test_ndcg > random_ndcg + 0.05, (test_ndcg, random_ndcg)
    assert results["learning_rate"] == pytest.approx(training.DNN_LEARNING_RATE)


def test_exported_model_serves_elwc_without_tfrank_and_reproduces_test_metric(trained, vali_labels, tmp_path):
    dataset, root, results = trained
    export_path = export.version_path(str(root / "export" / "softmax"))
    records = ELWC_FILE
    if dataset == file_input.LIBSVM:  # its ELWC requests carry the LibSVM feature names, "1" .. "136"
        labels, features = _vali_lists()
        records = str(tmp_path / "vali_libsvm_names.tfrecord")
        elwc.write_elwc(records, [
            (None, [{str(i + 1): features[row, item, i] for i in range(NUM_FEATURES)}
                    for item in range(int((labels[row] >= 0).sum()))])
            for row in range(labels.shape[0])])
    served = _serve_without_tfrank(export_path, records, tmp_path)
    assert not served["tfrank_imported"]
    assert served["signatures"] == ["serving_default", "tensorflow/serving/predict", "tensorflow/serving/regress"]
    assert served["feature_names"] == file_input.feature_names(dataset, NUM_FEATURES)
    scores = np.array(served["serving_default"])
    assert scores.shape == vali_labels.shape
    np.testing.assert_array_equal(scores == PADDING_SCORE, vali_labels < 0)
    for other in ("tensorflow/serving/predict", "serving_default:scores", "session"):
        np.testing.assert_allclose(np.array(served[other]), scores, rtol=1e-6)
    np.testing.assert_allclose(np.array(served["regress"]), scores[vali_labels >= 0], rtol=1e-5, atol=1e-6)
    assert _ndcg5(vali_labels, scores) == pytest.approx(results["test"]["ndcg@5"], abs=1e-6)


def test_export_scores_equal_the_keras_models_on_elwc_built_in_the_test(tmp_path, serve_binary):  # noqa: F811
    names = ["f1", "f2", "f3"]
    model = dnn_models.DNNRankingModel(names, hidden_units=(8,))
    rng = np.random.default_rng(3)
    for variable in model.weights:  # the batch norm's moving statistics too: serving must read them
        draw = rng.uniform(0.5, 2.0, variable.shape) if "variance" in variable.path else rng.normal(
            scale=0.5, size=variable.shape)
        variable.assign(draw.astype("float32"))
    values = rng.normal(size=[3, 4, 3]).astype("float32")
    lengths = [4, 1, 3]
    lists = [(None, [{name: values[row, item, i] for i, name in enumerate(names)} for item in range(length)])
             for row, length in enumerate(lengths)]
    del lists[2][1][1]["f2"]  # an item without a feature reads 0, in serving as in the Keras model below
    values[2, 1, 1] = 0.0
    records = str(tmp_path / "lists.tfrecord")
    assert elwc.write_elwc(records, lists) == 3
    served = _serve_without_tfrank(export.export_saved_model(model, str(tmp_path / "export")), records, tmp_path)
    mask = np.arange(4)[None, :] < np.array(lengths)[:, None]
    expected = model({**{name: tf.constant(values[..., i:i + 1]) for i, name in enumerate(names)},
                      dnn_models.MASK_FEATURE: tf.constant(mask)}).numpy()
    np.testing.assert_allclose(np.array(served["serving_default"]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(served["regress"]), expected[mask], rtol=1e-5, atol=1e-6)
    assert np.all(np.array(served["serving_default"])[~mask] == PADDING_SCORE)
    # The C API loader TF Serving uses, fed the serialized ELWC strings a TF Ranking client sends.
    np.testing.assert_allclose(_serve_elwc_in_c(serve_binary, str(tmp_path / "export" / "1"), records, tmp_path),
                               expected.reshape(-1), rtol=1e-5, atol=1e-6)


def _serve_elwc_in_c(binary, version_dir: str, records_path: str, tmp_path) -> np.ndarray:
    """``serving_default``'s scores, flat, for the ELWC records of ``records_path``, through the TF C API."""
    framed = tmp_path / "records.bin"  # each record: its 4-byte little-endian length, then its bytes
    framed.write_bytes(b"".join(len(record).to_bytes(4, "little") + record
                                for record in tf.data.TFRecordDataset(records_path).as_numpy_iterator()))
    meta_graph = _meta_graph(version_dir).signature_def["serving_default"]
    argv = [str(binary), "--strings", version_dir, meta_graph.inputs["inputs"].name,
            meta_graph.outputs["outputs"].name, str(framed)]
    process = subprocess.run(argv, capture_output=True, text=True, env=_QUIET_ENV, timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    return np.array([float(line) for line in process.stdout.split()], np.float32)


def test_training_lists_are_cut_to_list_size_and_evaluation_lists_are_whole(vali_labels):
    config = training.TrainConfig(dataset=file_input.LIBSVM, train_path=LIBSVM_FILE, valid_path=LIBSVM_FILE,
                                  test_path=LIBSVM_FILE, num_features=NUM_FEATURES, list_size=4, batch_size=100)
    data = training.prepare_data(config)
    labels, features = _vali_lists()
    np.testing.assert_array_equal(data.train_labels.numpy(), labels[:, :4])
    np.testing.assert_array_equal(data.train_features[dnn_models.MASK_FEATURE].numpy(), labels[:, :4] >= 0)
    np.testing.assert_array_equal(data.train_features["7"].numpy()[..., 0], features[:, :4, 6])
    (val_features, val_labels), = list(data.val)
    np.testing.assert_array_equal(val_labels.numpy(), labels)
    np.testing.assert_array_equal(val_features["136"].numpy()[..., 0], features[:, :, 135])
    assert isinstance(training.build_model(config, data), dnn_models.DNNRankingModel)


def test_elwc_lists_equal_the_libsvm_lists_of_the_same_data():
    common = dict(train_path=None, num_features=NUM_FEATURES, list_size=9, batch_size=100)
    libsvm_data = training.prepare_data(training.TrainConfig(
        dataset=file_input.LIBSVM, **{**common, "train_path": LIBSVM_FILE}, valid_path=LIBSVM_FILE,
        test_path=LIBSVM_FILE))
    elwc_data = training.prepare_data(training.TrainConfig(
        dataset=file_input.ELWC, **{**common, "train_path": ELWC_FILE}, valid_path=ELWC_FILE, test_path=ELWC_FILE))
    np.testing.assert_array_equal(elwc_data.train_labels.numpy(), libsvm_data.train_labels.numpy())
    np.testing.assert_allclose(elwc_data.train_features["custom_features_5"].numpy(),
                               libsvm_data.train_features["5"].numpy(), rtol=1e-6)


@pytest.mark.parametrize("overrides, match", [
    ({"train_path": None}, "train_path is unset"),
    ({"test_path": "/no/such/file.txt"}, "test_path='/no/such/file.txt': no such file"),
    ({"num_features": None}, "num_features=None"),
    ({"num_features": 0}, "num_features=0"),
    ({"input": "stream"}, "input=stream with dataset=libsvm"),
    ({"dataset": file_input.ELWC, "valid_path": "/no/*.tfrecord"}, "valid_path='/no/\\*.tfrecord': matches no file"),
    ({"dataset": file_input.ELWC, "label_key": ""}, "label_key is empty"),
])
def test_bad_config_names_the_field(overrides, match):
    fields = dict(dataset=file_input.LIBSVM, train_path=LIBSVM_FILE, valid_path=LIBSVM_FILE,
                  test_path=LIBSVM_FILE, num_features=NUM_FEATURES)
    if overrides.get("dataset") == file_input.ELWC:
        fields.update(train_path=ELWC_FILE, valid_path=ELWC_FILE, test_path=ELWC_FILE)
    with pytest.raises(ValueError, match=match):
        training.TrainConfig(**{**fields, **overrides}).validate()


@pytest.mark.parametrize("args, message", [
    (["--dataset=libsvm", f"--train_path={LIBSVM_FILE}", f"--valid_path={LIBSVM_FILE}", "--num_features=136"],
     "--test_path is unset"),
    (_file_args("elwc", ELWC_FILE) + ["--label_key=relevance", "--epochs=1"], "has the label feature `relevance`"),
])
def test_bad_flags_fail_in_one_line(args, message):
    process = _run([TRAIN, *args])
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: ") and message in lines[0], process.stderr


def test_a_run_on_other_files_does_not_resume_this_one(tmp_path):
    fields = dict(dataset=file_input.LIBSVM, train_path=LIBSVM_FILE, valid_path=LIBSVM_FILE, test_path=LIBSVM_FILE,
                  num_features=NUM_FEATURES, model_dir=str(tmp_path))
    stored = training._identity(training.TrainConfig(**fields))
    other = training.TrainConfig(**{**fields, "train_path": str(tmp_path / "other.txt")})
    with pytest.raises(training.RunMismatchError, match="--train_path=.*other.txt"):
        training._check_same_run(other, stored, str(tmp_path / training.RUN_CONFIG_FILE))


def test_movielens_ranking_refuses_a_feature_list_export_naming_what_it_serves(tmp_path):
    model = dnn_models.DNNRankingModel(["1", "2"], hidden_units=(4,))
    path = export.export_saved_model(model, str(tmp_path / "export"))
    for call in (lambda: export.vocabularies(path), lambda: export.rank_movies(path, user_id=1, movie_ids=[3])):
        with pytest.raises(ValueError, match="the export is a feature-list model .* scores serialized ELWC through "
                                             "its serving_default signature, not user and movie ids"):
            call()
