"""Tests for tfrank.metrics: hand-computed values, TF Ranking 0.5.5 fixtures, Keras integration and the registry.

The fixtures come from tests/fixtures/make_metric_fixtures.py (run with the TF Ranking reference environment).
"""

import doctest
import json
import math
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrank import metrics
from tfrank.metrics import _base, ranking, registry

FIXTURES = json.loads((pathlib.Path(__file__).parent / "fixtures" / "tfr_metrics.json").read_text())["cases"]
ALL_METRICS = [
    metrics.MRRMetric,
    metrics.ARPMetric,
    metrics.PrecisionMetric,
    metrics.RecallMetric,
    metrics.MeanAveragePrecisionMetric,
    metrics.NDCGMetric,
    metrics.DCGMetric,
    metrics.OPAMetric,
    metrics.HitsMetric,
]
TOPN_METRICS = [m for m in ALL_METRICS if m.takes_topn]


@keras.saving.register_keras_serializable(package="tfrank_tests")
def identity_gain(labels):
    return labels


@keras.saving.register_keras_serializable(package="tfrank_tests")
def inverse_discount(rank):
    return 1.0 / rank


FIXTURE_FUNCTIONS = {"identity": identity_gain, "inverse": inverse_discount}


def _result(metric, labels, scores, sample_weight=None) -> float:
    metric.update_state(labels, scores, sample_weight=sample_weight)
    return float(metric.result())


def _fixture_tensors(update):
    ragged = update.get("ragged", False)
    make = tf.ragged.constant if ragged else (lambda value: tf.constant(value, tf.float32))
    weights = update.get("weights")
    if weights is not None:
        item_weights = ragged and update["weights_kind"] == "item"
        weights = tf.ragged.constant(weights) if item_weights else tf.constant(weights, tf.float32)
    return make(update["labels"]), make(update["scores"]), weights


def _random_lists(seed, batch_size=6, list_size=7):
    """Padded labels (-1 marks padding, one list fully padded), distinct scores, per-item weights and lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, list_size + 1, size=batch_size)
    lengths[0] = list_size
    labels = np.full((batch_size, list_size), -1.0, np.float32)
    scores = np.zeros((batch_size, list_size), np.float32)
    weights = np.zeros((batch_size, list_size), np.float32)
    for row, length in enumerate(lengths):
        labels[row, :length] = rng.integers(0, 4, size=length)
        scores[row, :length] = rng.permutation(length) + rng.uniform(0.1, 0.5, size=length)
        weights[row, :length] = rng.uniform(0.5, 2.0, size=length)
    return labels, scores, weights, lengths


# --- documented and hand-computed values -------------------------------------------------------------------------


@pytest.mark.parametrize("module", [ranking, registry, _base], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    outcome = doctest.testmod(module, verbose=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert outcome.failed == 0
    if module is not _base:
        assert outcome.attempted > 0


def test_mrr_of_list_without_relevant_item_counts_as_zero():
    # Second list has no relevant item: MRR 0 with the batch's mean weight (1), as in TF Ranking.
    assert _result(metrics.MRRMetric(), [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], [[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]) == 0.25


def test_ndcg_of_all_zero_labels_is_zero_not_nan():
    assert _result(metrics.NDCGMetric(), [[0.0, 0.0, 0.0]], [[1.0, 2.0, 3.0]]) == 0.0


def test_precision_at_k_divides_by_valid_items_when_list_is_shorter():
    # One valid item (relevant) and two padded ones: P@3 = 1 / min(3, 1).
    assert _result(metrics.PrecisionMetric(topn=3), [[1.0, -1.0, -1.0]], [[0.1, 0.5, 0.9]]) == 1.0


def test_padded_items_sort_last_whatever_their_scores():
    assert _result(metrics.MRRMetric(), [[-1.0, 0.0, 1.0]], [[9.0, 2.0, 1.0]]) == 0.5


def test_per_list_weights_weight_the_mean():
    labels, scores = [[1.0, 0.0], [0.0, 1.0]], [[2.0, 1.0], [2.0, 1.0]]  # MRR 1 and 0.5
    assert _result(metrics.MRRMetric(), labels, scores, [[3.0], [1.0]]) == pytest.approx((3.0 + 0.5) / 4.0)


def test_score_ties_rank_in_input_order():
    assert _result(metrics.MRRMetric(), [[0.0, 1.0]], [[1.0, 1.0]]) == 0.5
    assert _result(metrics.MRRMetric(), [[1.0, 0.0]], [[1.0, 1.0]]) == 1.0


def test_single_item_lists():
    assert _result(metrics.NDCGMetric(topn=3), [[2.0], [0.0]], [[0.3], [0.1]]) == 0.5
    assert _result(metrics.OPAMetric(), [[2.0], [0.0]], [[0.3], [0.1]]) == 0.0  # no pairs: nothing counted


# --- TF Ranking fixtures -----------------------------------------------------------------------------------------


def _fixture_result(case, drop_all_padding_lists=False):
    kwargs = {key: FIXTURE_FUNCTIONS.get(value, value) for key, value in case["kwargs"].items()}
    metric = getattr(metrics, case["metric"])(**kwargs)
    for update in case["updates"]:
        if drop_all_padding_lists:
            keep = [i for i, row in enumerate(update["labels"]) if max(row) >= 0]
            update = dict(update, **{key: [update[key][i] for i in keep] for key in ("labels", "scores", "weights")
                                     if update.get(key) is not None})
        labels, scores, weights = _fixture_tensors(update)
        metric.update_state(labels, scores, sample_weight=weights)
    return float(metric.result())


def _counts_all_padding_lists(case):
    """TF Ranking counts a list without valid items as a 0 (with weight) where it sits beside real lists; tfrank
    ignores it, as it does when the list is alone. ARP and OPA give such lists weight 0 in TF Ranking too."""
    return "all_padding_list" in case["id"] and case["metric"] not in ("ARPMetric", "OPAMetric")


@pytest.mark.parametrize("case", [c for c in FIXTURES if not _counts_all_padding_lists(c)], ids=lambda c: c["id"])
def test_matches_tf_ranking(case):
    assert _fixture_result(case) == pytest.approx(case["expected"], abs=1e-5, rel=1e-5)


@pytest.mark.parametrize("case", [c for c in FIXTURES if _counts_all_padding_lists(c)], ids=lambda c: c["id"])
def test_all_padding_lists_are_ignored_where_tf_ranking_counts_them_as_zeros(case):
    value = _fixture_result(case)
    assert value == pytest.approx(_fixture_result(case, drop_all_padding_lists=True), rel=1e-6)
    assert value > case["expected"] + 1e-3
    if "weights" not in case["updates"][0]:  # TF Ranking's mean has one more list, of value 0 and weight 1
        lists = len(case["updates"][0]["labels"])
        assert value == pytest.approx(case["expected"] * lists / (lists - 1), rel=1e-5)


def test_fixtures_cover_every_metric_and_edge_case():
    ids = {case["id"] for case in FIXTURES}
    for metric_class in ALL_METRICS:
        for case in (
            "plain",
            "list_weights",
            "item_weights",
            "padding",
            "all_zero_lists",
            "all_padding_batch",
            "single_item_lists",
            "label_ties",
            "ragged",
            "ragged_item_weights",
            "accumulate",
        ):
            assert f"{metric_class.__name__}-{case}" in ids
    for metric_class in TOPN_METRICS:
        for topn in (1, 3, 5, 12):
            assert f"{metric_class.__name__}-topn{topn}" in ids


# --- accumulation, reset, padding --------------------------------------------------------------------------------


@pytest.mark.parametrize("metric_class", ALL_METRICS, ids=lambda c: c.__name__)
def test_metric_that_saw_nothing_is_zero(metric_class):
    assert float(metric_class().result()) == 0.0


@pytest.mark.parametrize("metric_class", ALL_METRICS, ids=lambda c: c.__name__)
def test_all_padding_batch_is_ignored(metric_class):
    labels, scores, _, _ = _random_lists(seed=1)
    metric = metric_class()
    before = _result(metric, labels, scores)
    after = _result(metric, -np.ones_like(labels), scores)
    assert after == pytest.approx(before)
    alone = _result(metric_class(), -np.ones_like(labels), scores, sample_weight=np.ones((6, 1)))
    assert alone == 0.0 and not math.isnan(alone)


@pytest.mark.parametrize("metric_class", ALL_METRICS, ids=lambda c: c.__name__)
def test_several_updates_give_the_weighted_mean_of_all_lists(metric_class):
    labels, scores, weights, _ = _random_lists(seed=2, batch_size=8)
    metric = metric_class()
    metric.update_state(labels[:3], scores[:3], sample_weight=weights[:3])
    metric.update_state(labels[3:], scores[3:], sample_weight=weights[3:])
    # The two-batch mean equals sum(value * weight) / sum(weight) over the per-list values of each batch.
    totals = []
    for part in (slice(0, 3), slice(3, 8)):
        lists, _ = metric.prepare(labels[part], scores[part], weights[part])
        values, list_weights = metric.per_list(lists)
        totals.append((float(tf.reduce_sum(values * list_weights)), float(tf.reduce_sum(list_weights))))
    expected = sum(t for t, _ in totals) / sum(w for _, w in totals)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("metric_class", ALL_METRICS, ids=lambda c: c.__name__)
def test_reset_state_forgets_earlier_updates(metric_class):
    labels, scores, _, _ = _random_lists(seed=3)
    metric = metric_class()
    fresh = _result(metric_class(), labels[3:], scores[3:])
    metric.update_state(labels[:3], scores[:3])
    metric.reset_state()
    assert float(metric.result()) == 0.0
    assert _result(metric, labels[3:], scores[3:]) == pytest.approx(fresh)


# --- ragged input ------------------------------------------------------------------------------------------------


def _ragged_twin(labels, scores, weights, lengths):
    def cut(values):
        return tf.RaggedTensor.from_tensor(values, lengths=lengths)

    return cut(labels), cut(scores), cut(weights)


@pytest.mark.parametrize("metric_class", ALL_METRICS, ids=lambda c: c.__name__)
def test_ragged_equals_padded_twin(metric_class):
    labels, scores, weights, lengths = _random_lists(seed=4)
    ragged_labels, ragged_scores, ragged_weights = _ragged_twin(labels, scores, weights, lengths)
    kwargs = {"topn": 3} if metric_class.takes_topn else {}
    padded = _result(metric_class(**kwargs), labels, scores, weights)
    assert _result(metric_class(ragged=True, **kwargs), ragged_labels, ragged_scores, ragged_weights) == (
        pytest.approx(padded, rel=1e-6)
    )
    per_list = _result(metric_class(**kwargs), labels, scores, weights[:, :1])
    assert _result(metric_class(ragged=True, **kwargs), ragged_labels, ragged_scores, weights[:, :1]) == (
        pytest.approx(per_list, rel=1e-6)
    )


def test_ragged_labels_with_padded_scores_as_keras_passes_them():
    labels, scores, _, lengths = _random_lists(seed=5)
    ragged_labels = tf.RaggedTensor.from_tensor(labels, lengths=lengths)
    expected = _result(metrics.NDCGMetric(topn=5), labels, scores)
    assert _result(metrics.NDCGMetric(topn=5, ragged=True), ragged_labels, scores) == pytest.approx(expected)


def test_ragged_length_mismatch_names_both_lengths():
    labels = tf.ragged.constant([[1.0, 0.0], [1.0]])
    with pytest.raises(ValueError, match=r"\[2, 1\].*\[2, 2\]"):
        metrics.MRRMetric(ragged=True).update_state(labels, tf.ragged.constant([[1.0, 0.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"sample_weight list lengths \[1, 1\]"):
        metrics.MRRMetric(ragged=True).update_state(labels, labels, sample_weight=tf.ragged.constant([[1.0], [1.0]]))


def test_ragged_input_without_ragged_flag_raises():
    labels = tf.ragged.constant([[1.0, 0.0], [1.0]])
    with pytest.raises(ValueError, match="ragged=True"):
        metrics.MRRMetric().update_state(labels, labels)


# --- bad input ---------------------------------------------------------------------------------------------------


def test_label_and_score_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        metrics.NDCGMetric().update_state(np.zeros((2, 3)), np.zeros((2, 4)))


def test_weight_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(2, 3\)"):
        metrics.MRRMetric().update_state(np.zeros((2, 3)), np.zeros((2, 3)), sample_weight=np.ones((2, 2)))


@pytest.mark.parametrize("topn", [0, -2, 1.5, True, "3"])
def test_invalid_topn_raises_at_construction_naming_the_value(topn):
    with pytest.raises(ValueError, match=f"topn={topn!r}"):
        metrics.NDCGMetric(topn=topn)


@pytest.mark.parametrize("metric_class", [metrics.ARPMetric, metrics.OPAMetric], ids=lambda c: c.__name__)
def test_whole_list_metrics_refuse_topn(metric_class):
    with pytest.raises(ValueError, match="topn=3"):
        metric_class(topn=3)


# --- registry ----------------------------------------------------------------------------------------------------


def test_get_with_cutoff():
    metric = metrics.get("ndcg@5")
    assert isinstance(metric, metrics.NDCGMetric) and metric.topn == 5 and metric.name == "ndcg@5"


def test_get_without_cutoff_and_alias():
    mrr = metrics.get("mrr")
    assert isinstance(mrr, metrics.MRRMetric) and mrr.topn is None and mrr.name == "mrr"
    assert isinstance(metrics.get("opa"), metrics.OPAMetric)
    assert isinstance(metrics.get("ordered_pair_accuracy"), metrics.OPAMetric)


def test_get_passes_kwargs_through():
    metric = metrics.get("map@3", ragged=True, name="my_map")
    assert isinstance(metric, metrics.MeanAveragePrecisionMetric)
    assert metric.ragged and metric.topn == 3 and metric.name == "my_map"


def test_names_are_sorted_tf_ranking_keys():
    expected = ["arp", "dcg", "hits", "map", "mrr", "ndcg", "ordered_pair_accuracy", "precision", "recall"]
    assert metrics.names() == expected
    for name in metrics.names():
        assert isinstance(metrics.get(name), metrics.RankingMetric)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown metric name 'nDCG_5'.*arp, dcg, hits"):
        metrics.get("nDCG_5")


@pytest.mark.parametrize("name", ["ndcg@0", "ndcg@x", "ndcg@", "mrr@-1", "ndcg@2.5"])
def test_bad_cutoff_names_the_problem(name):
    with pytest.raises(ValueError, match=f"'{name}'.*positive integer"):
        metrics.get(name)


def test_cutoff_on_whole_list_metric_raises():
    with pytest.raises(ValueError, match="arp@3"):
        metrics.get("arp@3")


# --- serialisation and Keras -------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric_class", ALL_METRICS, ids=lambda c: c.__name__)
def test_config_round_trip(metric_class):
    kwargs = {"topn": 4} if metric_class.takes_topn else {}
    metric = metric_class(name="m", ragged=True, **kwargs)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is metric_class and restored.get_config() == metric.get_config()
    assert restored.ragged and restored.name == "m"


def test_registered_custom_gain_and_discount_round_trip():
    metric = metrics.NDCGMetric(topn=3, gain_fn=identity_gain, rank_discount_fn=inverse_discount)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert restored.gain_fn is identity_gain and restored.rank_discount_fn is inverse_discount
    labels, scores, _, _ = _random_lists(seed=6)
    assert _result(restored, labels, scores) == pytest.approx(_result(metric, labels, scores))


def test_default_gain_and_discount_serialise_as_none():
    config = metrics.DCGMetric().get_config()
    assert config["gain_fn"] is None and config["rank_discount_fn"] is None


def _zero_loss(y_true, y_pred):
    return tf.reduce_mean(y_pred) * 0.0


def _scoring_model(metric_list, loss=_zero_loss):
    features = keras.Input(shape=(None, 2))
    scores = keras.layers.Reshape((-1,))(keras.layers.Dense(1)(features))
    model = keras.Model(features, scores)
    model.compile(optimizer="sgd", loss=loss, metrics=metric_list)
    return model


def _dense_data(seed=7):
    labels, _, _, _ = _random_lists(seed, batch_size=8, list_size=5)
    features = np.random.default_rng(seed).normal(size=(8, 5, 2)).astype(np.float32)
    return features, labels


def test_fit_and_evaluate_with_padded_batches():
    features, labels = _dense_data()
    model = _scoring_model([metrics.get("ndcg@3"), metrics.get("mrr"), metrics.OPAMetric(name="opa")])
    history = model.fit(features, labels, batch_size=4, epochs=1, verbose=0)
    assert 0.0 <= history.history["ndcg@3"][0] <= 1.0
    results = model.evaluate(features, labels, batch_size=8, verbose=0, return_dict=True)
    expected = _result(metrics.NDCGMetric(topn=3), labels, model.predict(features, verbose=0))
    assert results["ndcg@3"] == pytest.approx(expected, rel=1e-5)


def test_fit_and_evaluate_with_ragged_labels():
    features, labels = _dense_data(seed=8)
    lengths = (labels >= 0).sum(axis=1)
    ragged_labels = tf.RaggedTensor.from_tensor(labels, lengths=lengths)
    data = tf.data.Dataset.from_tensor_slices((features, ragged_labels)).batch(8)
    ragged_model = _scoring_model([metrics.get("ndcg@3", ragged=True), metrics.get("map", ragged=True)])
    ragged_model.fit(data, epochs=1, verbose=0)
    ragged_results = ragged_model.evaluate(data, verbose=0, return_dict=True)
    scores = ragged_model.predict(features, verbose=0)
    assert ragged_results["ndcg@3"] == pytest.approx(_result(metrics.NDCGMetric(topn=3), labels, scores), rel=1e-5)
    assert ragged_results["map"] == pytest.approx(_result(metrics.MeanAveragePrecisionMetric(), labels, scores))


def test_keras_file_round_trip_keeps_metrics(tmp_path):
    features, labels = _dense_data(seed=9)
    model = _scoring_model([metrics.get("ndcg@3"), metrics.DCGMetric(name="dcg", gain_fn=identity_gain)], loss="mse")
    before = model.evaluate(features, labels, verbose=0, return_dict=True)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    after = loaded.evaluate(features, labels, verbose=0, return_dict=True)
    assert after["ndcg@3"] == pytest.approx(before["ndcg@3"], rel=1e-6)
    assert after["dcg"] == pytest.approx(before["dcg"], rel=1e-6)


# --- lists without valid items -----------------------------------------------------------------------------------


@pytest.mark.parametrize("metric_class", ALL_METRICS, ids=lambda c: c.__name__)
def test_all_padding_list_beside_a_real_list_is_ignored_as_when_alone(metric_class):
    labels, scores = [[1.0, 0.0, 2.0, -1.0]], [[0.5, 0.9, 0.1, 0.0]]
    alone = _result(metric_class(), labels, scores)
    beside = _result(metric_class(), labels + [[-1.0] * 4], scores + [[0.3, 0.2, 0.1, 0.0]])
    assert beside == pytest.approx(alone, rel=1e-6)
    weighted = _result(metric_class(), labels + [[-1.0] * 4], scores + [[0.3, 0.2, 0.1, 0.0]], [[2.0], [5.0]])
    assert weighted == pytest.approx(alone, rel=1e-6)
    assert _result(metric_class(), [[-1.0] * 4], [[0.3, 0.2, 0.1, 0.0]]) == 0.0


def test_ndcg_of_a_list_is_not_halved_by_an_all_padding_neighbour():
    labels, scores = [[1.0, 0.0, 2.0]], [[0.5, 0.9, 0.1]]
    alone = _result(metrics.NDCGMetric(), labels, scores)
    assert alone == pytest.approx((1.0 / math.log2(3.0) + 3.0 / 2.0) / (3.0 + 1.0 / math.log2(3.0)), rel=1e-6)
    assert _result(metrics.NDCGMetric(), labels + [[-1.0, -1.0, -1.0]], scores + [[0.0, 0.0, 0.0]]) == (
        pytest.approx(alone, rel=1e-6)
    )


def test_a_list_whose_items_all_weigh_zero_is_ignored():
    labels, scores = [[1.0, 0.0, 2.0], [2.0, 0.0, 1.0]], [[0.5, 0.9, 0.1], [0.1, 0.2, 0.3]]
    alone = _result(metrics.NDCGMetric(), labels[:1], scores[:1])
    assert _result(metrics.NDCGMetric(), labels, scores, [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]) == pytest.approx(alone)


# --- non-finite scores -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric_class", ALL_METRICS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad_score", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_score_on_a_valid_item_makes_the_result_nan(metric_class, bad_score):
    labels = [[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]
    scores = [[0.5, bad_score, 0.1], [0.3, 0.2, 0.1]]
    metric = metric_class()
    assert math.isnan(_result(metric, labels, scores))
    assert math.isnan(_result(metric, [[1.0, 0.0]], [[0.2, 0.1]]))  # NaN stays until reset_state
    metric.reset_state()
    assert not math.isnan(_result(metric, [[1.0, 0.0]], [[0.2, 0.1]]))


@pytest.mark.parametrize("metric_class", ALL_METRICS, ids=lambda c: c.__name__)
def test_non_finite_score_makes_the_result_nan_inside_tf_function(metric_class):
    metric = metric_class()

    @tf.function
    def update(labels, scores):
        metric.update_state(labels, scores)

    update(tf.constant([[1.0, 0.0, 2.0]]), tf.constant([[0.5, 0.9, 0.1]]))
    assert not math.isnan(float(metric.result()))
    update(tf.constant([[1.0, 0.0, 2.0]]), tf.constant([[0.5, float("nan"), float("inf")]]))
    assert math.isnan(float(metric.result()))


@pytest.mark.parametrize("metric_class", ALL_METRICS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad_score", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_score_on_a_padded_item_changes_nothing(metric_class, bad_score):
    labels = [[1.0, -1.0, 0.0, 2.0], [0.0, 1.0, -1.0, -1.0]]
    scores = [[0.5, 0.0, 0.9, 0.1], [0.3, 0.2, 0.0, 0.0]]
    polluted = [[0.5, bad_score, 0.9, 0.1], [0.3, 0.2, bad_score, bad_score]]
    assert _result(metric_class(), labels, polluted) == pytest.approx(_result(metric_class(), labels, scores))


# --- one input rule with the losses ------------------------------------------------------------------------------

RAGGED_SPEC = tf.RaggedTensorSpec([None, None], tf.float32, ragged_rank=1)


@pytest.mark.parametrize("metric_class", [metrics.NDCGMetric, metrics.MRRMetric], ids=lambda c: c.__name__)
def test_ragged_lists_of_different_lengths_are_rejected_inside_tf_function(metric_class):
    metric = metric_class(ragged=True)

    @tf.function(input_signature=[RAGGED_SPEC, RAGGED_SPEC])
    def update(labels, scores):
        metric.update_state(labels, scores)

    with pytest.raises(tf.errors.InvalidArgumentError, match="ragged labels and scores differ in list lengths"):
        update(tf.ragged.constant([[1.0, 0.0], [1.0]]), tf.ragged.constant([[1.0], [0.0, 1.0]]))


def test_ragged_and_padded_labels_follow_the_same_rule_as_the_losses():
    labels = tf.ragged.constant([[1.0, -1.0, 2.0], [0.0, 1.0]])  # a label -1 inside a ragged list is padding too
    scores = tf.ragged.constant([[0.1, 9.0, 0.3], [0.5, 0.2]])
    padded = _result(metrics.NDCGMetric(), labels.to_tensor(-1.0), scores.to_tensor(0.0))
    assert _result(metrics.NDCGMetric(ragged=True), labels, scores) == pytest.approx(padded)


def test_the_metric_base_is_abstract():
    with pytest.raises(TypeError, match="per_list"):
        metrics.RankingMetric()

    class NoPerList(metrics.RankingMetric):
        pass

    with pytest.raises(TypeError, match="per_list"):
        NoPerList()


# --- TF Ranking's diversity metrics and broadcast sample weights (tests/fixtures/make_catalogue_fixtures.py) -------

CATALOGUE = json.loads((pathlib.Path(__file__).parent / "fixtures" / "tfr_catalogue.json").read_text())["metrics"]
DIVERSITY_METRICS = {"AlphaDCGMetric", "PrecisionIAMetric"}


def _catalogue_metric(case):
    args = dict(case["args"])
    if "rank_discount_fn" in args:
        args["rank_discount_fn"] = FIXTURE_FUNCTIONS[args["rank_discount_fn"]]
    return getattr(metrics, case["metric"])(**args)


def _catalogue_tensors(case):
    weights = case.get("weights")
    if not case["ragged"]:
        weights = None if weights is None else tf.constant(weights, tf.float32)
        return tf.constant(case["labels"], tf.float32), tf.constant(case["scores"], tf.float32), weights
    labels = tf.ragged.constant(case["labels"], ragged_rank=1)
    if weights is not None:
        weights = tf.ragged.constant(weights)
    return labels, tf.ragged.constant(case["scores"]), weights


@pytest.mark.parametrize("case", CATALOGUE, ids=[case["id"] for case in CATALOGUE])
def test_catalogue_metric_matches_tf_ranking(case):
    labels, scores, weights = _catalogue_tensors(case)
    assert _result(_catalogue_metric(case), labels, scores, weights) == pytest.approx(case["expected"], abs=1e-5)


@pytest.mark.parametrize("case", [c for c in CATALOGUE if c["id"].endswith(("padding_item_weights", "ragged"))
                                  or "broadcast_per_item_vector" in c["id"]], ids=lambda case: case["id"])
def test_catalogue_metric_matches_tf_ranking_inside_tf_function(case):
    labels, scores, weights = _catalogue_tensors(case)
    metric = _catalogue_metric(case)
    tf.function(lambda: metric.update_state(labels, scores, sample_weight=weights))()
    assert float(metric.result()) == pytest.approx(case["expected"], abs=1e-5)


def test_per_list_weight_vector_is_ambiguous_when_the_batch_is_as_long_as_the_lists():
    labels, scores = [[1.0, 0.0], [0.0, 1.0]], [[0.3, 0.1], [0.2, 0.4]]
    with pytest.raises(ValueError, match=r"reshape it to \[batch, 1\].*\[1, list_size\]"):
        metrics.NDCGMetric().update_state(labels, scores, sample_weight=[1.0, 2.0])


def test_per_list_weight_vector_of_fit_stays_per_list():
    labels, scores = [[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]], [[0.3, 0.1, 0.2], [0.5, 0.4, 0.1]]
    vector = _result(metrics.MRRMetric(), labels, scores, [1.0, 3.0])
    column = _result(metrics.MRRMetric(), labels, scores, [[1.0], [3.0]])
    assert vector == column == pytest.approx((1.0 * 1.0 + 3.0 * 0.5) / 4.0)


def test_diversity_metrics_round_trip_their_config():
    alpha = metrics.AlphaDCGMetric(topn=3, alpha=0.2, rank_discount_fn=inverse_discount, seed=4)
    config = alpha.get_config()
    assert (config["name"], config["topn"], config["alpha"], config["seed"]) == ("alpha_dcg_metric", 3, 0.2, 4)
    again = metrics.AlphaDCGMetric.from_config(config)
    labels, scores = [[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]], [[2.0, 1.0, 3.0]]
    assert _result(again, labels, scores) == pytest.approx(_result(alpha, labels, scores))
    precision = metrics.PrecisionIAMetric.from_config(metrics.PrecisionIAMetric(topn=2, ragged=True).get_config())
    assert (precision.topn, precision.ragged) == (2, True)


def test_diversity_metric_rejects_item_labels():
    with pytest.raises(ValueError, match=r"labels \(1, 2\): AlphaDCGMetric needs labels \[batch, list_size"):
        metrics.AlphaDCGMetric().update_state([[1.0, 0.0]], [[0.2, 0.1]])


def test_registry_of_the_training_run_leaves_out_the_subtopic_metrics():
    for name in ("alpha_dcg", "precision_ia"):
        with pytest.raises(ValueError, match=f"unknown metric name '{name}'"):
            metrics.get(name)
