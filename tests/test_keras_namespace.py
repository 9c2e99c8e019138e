"""tfrank.keras: TF Ranking's names, keys and factories over tfrank's single definitions, and TF Ranking's saved files.

The reference values come from tests/fixtures/make_catalogue_fixtures.py (run with TF 2.15 + tensorflow-ranking 0.5.5).
"""

import doctest
import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrank as tfr
from tfrank import losses, metrics, ops

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
CATALOGUE = json.loads((FIXTURES / "tfr_catalogue.json").read_text())

# TF Ranking 0.5.5's tfr.keras.losses / tfr.keras.metrics classes.
TFR_LOSS_CLASSES = [
    "PairwiseHingeLoss", "PairwiseLogisticLoss", "PairwiseSoftZeroOneLoss", "PairwiseMSELoss", "YetiLogisticLoss",
    "SoftmaxLoss", "CalibratedSoftmaxLoss", "UniqueSoftmaxLoss", "ListMLELoss", "ApproxMRRLoss", "ApproxNDCGLoss",
    "GumbelApproxNDCGLoss", "ClickEMLoss", "MixtureEMLoss", "SigmoidCrossEntropyLoss", "MeanSquaredLoss",
    "OrdinalLoss", "CoupledRankDistilLoss", "LabelDiffLambdaWeight", "DCGLambdaWeight", "NDCGLambdaWeightV2",
    "YetiDCGLambdaWeight", "NDCGLambdaWeight", "PrecisionLambdaWeight", "ListMLELambdaWeight",
]
TFR_METRIC_CLASSES = [
    "MRRMetric", "HitsMetric", "ARPMetric", "PrecisionMetric", "RecallMetric", "PrecisionIAMetric",
    "MeanAveragePrecisionMetric", "NDCGMetric", "DCGMetric", "AlphaDCGMetric", "OPAMetric",
]


@pytest.mark.parametrize("module", [tfr.keras, tfr.keras.losses, tfr.keras.metrics, tfr.keras._saving],
                         ids=lambda module: module.__name__)
def test_docstring_examples_run(module):
    assert doctest.testmod(module, raise_on_error=False).failed == 0


@pytest.mark.parametrize("name", TFR_LOSS_CLASSES)
def test_loss_names_are_aliases_of_the_one_tfrank_definition(name):
    assert getattr(tfr.keras.losses, name) is getattr(losses, name)


@pytest.mark.parametrize("name", TFR_METRIC_CLASSES)
def test_metric_names_are_aliases_of_the_one_tfrank_definition(name):
    assert getattr(tfr.keras.metrics, name) is getattr(metrics, name)


def test_utils_functions_are_tfrank_ops():
    for name in ("identity", "inverse", "pow_minus_1", "log2_inverse", "is_greater_equal_1"):
        assert getattr(tfr.keras.utils, name) is getattr(ops, name)


def test_keys_are_tf_ranking_keys():
    assert tfr.keras.losses.RankingLossKey.all_keys() == CATALOGUE["loss_keys"]
    metric_keys = sorted(v for k, v in vars(tfr.keras.metrics.RankingMetricKey).items() if k.isupper())
    assert metric_keys == CATALOGUE["metric_keys"]


# --- losses.get -----------------------------------------------------------------------------------------------------

LOSS_CLASS_BY_KEY = {
    "pairwise_hinge_loss": losses.PairwiseHingeLoss, "pairwise_logistic_loss": losses.PairwiseLogisticLoss,
    "pairwise_soft_zero_one_loss": losses.PairwiseSoftZeroOneLoss, "pairwise_mse_loss": losses.PairwiseMSELoss,
    "yeti_logistic_loss": losses.YetiLogisticLoss, "softmax_loss": losses.SoftmaxLoss,
    "calibrated_softmax_loss": losses.CalibratedSoftmaxLoss, "unique_softmax_loss": losses.UniqueSoftmaxLoss,
    "sigmoid_cross_entropy_loss": losses.SigmoidCrossEntropyLoss, "mean_squared_loss": losses.MeanSquaredLoss,
    "ordinal_loss": losses.OrdinalLoss, "list_mle_loss": losses.ListMLELoss, "approx_ndcg_loss": losses.ApproxNDCGLoss,
    "approx_mrr_loss": losses.ApproxMRRLoss, "gumbel_approx_ndcg_loss": losses.GumbelApproxNDCGLoss,
    "coupled_rankdistil_loss": losses.CoupledRankDistilLoss,
}
TAKES_LAMBDA_WEIGHT = {"pairwise_hinge_loss", "pairwise_logistic_loss", "pairwise_soft_zero_one_loss",
                       "pairwise_mse_loss", "yeti_logistic_loss", "softmax_loss", "calibrated_softmax_loss",
                       "unique_softmax_loss", "list_mle_loss"}


@pytest.mark.parametrize("key", CATALOGUE["loss_keys"])
def test_loss_get_builds_each_key_with_name_and_reduction(key):
    loss = tfr.keras.losses.get(key, reduction="sum", name=f"my_{key}")
    assert type(loss) is LOSS_CLASS_BY_KEY[key]
    assert (loss.name, loss.reduction) == (f"my_{key}", "sum")


@pytest.mark.parametrize("key", sorted(TAKES_LAMBDA_WEIGHT - {"list_mle_loss", "yeti_logistic_loss"}))
def test_loss_get_passes_the_lambda_weight_to_the_losses_that_take_one(key):
    lambda_weight = tfr.keras.losses.NDCGLambdaWeight(topn=2)
    assert tfr.keras.losses.get(key, lambda_weight=lambda_weight).lambda_weight is lambda_weight


@pytest.mark.parametrize("key", sorted(set(CATALOGUE["loss_keys"]) - TAKES_LAMBDA_WEIGHT))
def test_loss_get_leaves_the_lambda_weight_out_for_losses_without_one(key):
    loss = tfr.keras.losses.get(key, lambda_weight=tfr.keras.losses.NDCGLambdaWeight())
    assert getattr(loss, "lambda_weight", None) is None


def test_loss_get_defaults_to_tf_ranking_reduction_and_passes_kwargs():
    loss = tfr.keras.losses.get(tfr.keras.losses.RankingLossKey.SOFTMAX_LOSS, temperature=2.0, ragged=True)
    assert (loss.reduction, loss.temperature, loss.ragged) == ("sum_over_batch_size", 2.0, True)
    assert float(loss([[1.0, 0.0]], [[0.6, 0.8]])) == pytest.approx(float(losses.SoftmaxLoss(temperature=2.0)(
        [[1.0, 0.0]], [[0.6, 0.8]])))


def test_loss_get_rejects_an_unknown_key_with_tf_ranking_message_and_the_valid_keys():
    with pytest.raises(ValueError, match=r"^unsupported loss: softmax; use one of .*softmax_loss"):
        tfr.keras.losses.get("softmax")


# --- metrics.get and default_keras_metrics ----------------------------------------------------------------------------

METRIC_CLASS_BY_KEY = {
    "mrr": metrics.MRRMetric, "arp": metrics.ARPMetric, "ndcg": metrics.NDCGMetric, "dcg": metrics.DCGMetric,
    "precision": metrics.PrecisionMetric, "map": metrics.MeanAveragePrecisionMetric,
    "precision_ia": metrics.PrecisionIAMetric, "ordered_pair_accuracy": metrics.OPAMetric,
    "alpha_dcg": metrics.AlphaDCGMetric, "hits": metrics.HitsMetric,
}


@pytest.mark.parametrize("key", CATALOGUE["metric_keys"])
def test_metric_get_builds_each_key(key):
    metric = tfr.keras.metrics.get(key, name=f"my_{key}", dtype="float32")
    assert type(metric) is METRIC_CLASS_BY_KEY[key]
    assert metric.name == f"my_{key}"


def test_metric_get_sets_topn_only_when_given():
    assert tfr.keras.metrics.get(tfr.keras.metrics.RankingMetricKey.NDCG, topn=5).topn == 5
    assert tfr.keras.metrics.get("mrr", topn=0).topn is None
    assert tfr.keras.metrics.get("arp").name.startswith("arp_metric")  # Keras numbers repeated default names
    assert tfr.keras.metrics.get("alpha_dcg").name == "alpha_dcg_metric"


def test_metric_get_rejects_bad_keys_with_tf_ranking_messages():
    with pytest.raises(ValueError, match=r"^Input `key` needs to be string"):
        tfr.keras.metrics.get(3)
    with pytest.raises(ValueError, match=r"^Unsupported metric: ndcg@5; use one of .*ndcg"):
        tfr.keras.metrics.get("ndcg@5")


def test_default_keras_metrics_are_tf_ranking_list_and_names():
    defaults = tfr.keras.metrics.default_keras_metrics()
    assert [metric.name for metric in defaults] == CATALOGUE["default_keras_metrics"]
    assert [type(metric) for metric in defaults[:4]] == [metrics.NDCGMetric] * 4
    assert [metric.topn for metric in defaults[:4]] == [1, 3, 5, 10]
    assert all(metric.ragged for metric in tfr.keras.metrics.default_keras_metrics(ragged=True))


def test_default_keras_metrics_compute_inside_fit_and_evaluate():
    inputs = keras.Input(shape=(4, 2))
    model = keras.Model(inputs, keras.layers.Flatten()(keras.layers.Dense(1)(inputs)))
    model.compile(optimizer="sgd", loss=tfr.keras.losses.SoftmaxLoss(),
                  metrics=tfr.keras.metrics.default_keras_metrics())
    features = np.random.default_rng(0).normal(size=(8, 4, 2)).astype("float32")
    labels = np.array([[1.0, 0.0, 2.0, -1.0]] * 8, dtype="float32")
    model.fit(features, labels, epochs=1, verbose=0)
    results = model.evaluate(features, labels, verbose=0, return_dict=True)
    ndcg = metrics.NDCGMetric()(labels, model(features))
    assert results["metric/ndcg"] == pytest.approx(float(ndcg), abs=1e-5)


# --- TF Ranking's serialized objects and saved models -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CATALOGUE["configs"]))
def test_tf_ranking_serialized_objects_load_as_tfrank_classes(name):
    config = CATALOGUE["configs"][name]
    with keras.saving.custom_object_scope(tfr.keras.custom_objects()):
        loaded = keras.saving.deserialize_keras_object(config)
    assert type(loaded) is getattr(tfr.keras.losses, name, None) or type(loaded) is getattr(tfr.keras.metrics, name)
    expected = {key: value for key, value in config["config"].items()
                if key not in ("reduction", "name", "dtype", "lambda_weight", "gain_fn", "rank_discount_fn",
                               "positive_fn")}
    for key, value in expected.items():
        assert getattr(loaded, key) == value, key
    if config["config"].get("lambda_weight"):
        lambda_config = config["config"]["lambda_weight"]
        assert type(loaded.lambda_weight).__name__ == lambda_config["class_name"].split(">")[1]
        assert loaded.lambda_weight.topn == lambda_config["config"]["topn"]


def test_tfrank_classes_round_trip_through_keras_serialization():
    objects = [losses.YetiLogisticLoss(seed=3, sample_size=2, lambda_weight=losses.YetiDCGLambdaWeight(topn=2)),
               losses.CalibratedSoftmaxLoss(virtual_label=0.5), losses.OrdinalLoss(ordinal_size=3),
               losses.ClickEMLoss(rel_loss_weight=2.0), losses.MixtureEMLoss(alpha=0.5),
               losses.CoupledRankDistilLoss(topk=2, sample_size=2, seed=5)]
    labels = tf.constant([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    for loss in objects:
        again = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
        depth = {"OrdinalLoss": 3, "ClickEMLoss": 2, "MixtureEMLoss": 2}.get(type(loss).__name__)
        scores = tf.reshape(tf.range(6 * (depth or 1), dtype=tf.float32) / 7.0, [2, 3] + ([depth] if depth else []))
        assert float(again(labels, scores)) == pytest.approx(float(loss(labels, scores)), rel=1e-6)


def test_tf_ranking_saved_keras_model_loads_with_custom_objects():
    model = keras.saving.load_model(FIXTURES / "tfr_model.keras", custom_objects=tfr.keras.custom_objects())
    inputs = np.asarray(CATALOGUE["model_inputs"], dtype="float32")
    np.testing.assert_allclose(model(inputs).numpy(), CATALOGUE["model_scores"], atol=1e-6)
    assert type(model.loss) is losses.PairwiseLogisticLoss
    assert model.steps_per_execution is None  # what load_model repairs


def test_tf_ranking_saved_keras_model_loads_with_tfrank_classes_and_evaluates():
    model = tfr.keras.load_model(FIXTURES / "tfr_model.keras")
    inputs = np.asarray(CATALOGUE["model_inputs"], dtype="float32")
    np.testing.assert_allclose(model(inputs).numpy(), CATALOGUE["model_scores"], atol=1e-6)
    loss = model.loss
    assert type(loss) is losses.PairwiseLogisticLoss and loss.temperature == 0.5
    assert type(loss.lambda_weight) is losses.NDCGLambdaWeight and loss.lambda_weight.topn == 3
    labels = np.array([[1.0, 0.0, 2.0, 0.0, -1.0], [0.0, 0.0, 1.0, 3.0, 1.0]], dtype="float32")
    results = model.evaluate(inputs, labels, verbose=0, return_dict=True)
    scores = model(inputs)
    assert results["ndcg_3"] == pytest.approx(float(metrics.NDCGMetric(topn=3)(labels, scores)), abs=1e-6)
    assert results["mrr"] == pytest.approx(float(metrics.MRRMetric()(labels, scores)), abs=1e-6)
    assert results["loss"] == pytest.approx(float(loss(labels, scores)), abs=1e-5)
