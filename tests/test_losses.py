"""Behaviour of tfrank.losses: docstring examples, hand-computed values, padding, ragged input, gradients, bad
input, the registry, serialisation and Keras training. TF Ranking equality lives in test_losses_tfr.py."""

import doctest
import importlib
import inspect
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrank import losses, ops

ALL_LOSSES = [
    losses.PairwiseHingeLoss,
    losses.PairwiseLogisticLoss,
    losses.PairwiseSoftZeroOneLoss,
    losses.PairwiseMSELoss,
    losses.SoftmaxLoss,
    losses.UniqueSoftmaxLoss,
    losses.ListMLELoss,
    losses.ApproxNDCGLoss,
    losses.ApproxMRRLoss,
    losses.SigmoidCrossEntropyLoss,
    losses.MeanSquaredLoss,
    losses.GumbelApproxNDCGLoss,
]
LOSS_IDS = [cls.__name__ for cls in ALL_LOSSES]


def _value_and_grad(loss, labels, scores, weights=None):
    scores = tf.convert_to_tensor(scores, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(scores)
        value = loss(tf.constant(labels, tf.float32), scores, weights)
    return value.numpy(), tape.gradient(value, scores).numpy()


# --- docstring examples -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    ["tfrank.losses", "tfrank.losses.pointwise", "tfrank.losses.pairwise", "tfrank.losses.listwise",
     "tfrank.losses.lambda_weights"],
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- hand-computed values ------------------------------------------------------------------------------------------


def test_pairwise_hinge_by_hand():
    # Pairs (0 over 1): 1 - (0.5 - 1.0) = 1.5; (0 over 2): 1 - (0.5 - 0.0) = 0.5; (1 over 2): 1 - 1.0 = 0 -> 0.
    value, _ = _value_and_grad(losses.PairwiseHingeLoss(), [[2.0, 1.0, 0.0]], [[0.5, 1.0, 0.0]])
    assert value == pytest.approx(2.0 / 3.0)


def test_pairwise_logistic_by_hand():
    value, _ = _value_and_grad(losses.PairwiseLogisticLoss(), [[1.0, 0.0]], [[0.0, 0.0]])
    assert value == pytest.approx(math.log(2.0) / 2.0)


def test_softmax_by_hand():
    value, _ = _value_and_grad(losses.SoftmaxLoss(), [[1.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]])
    # Target (1/2, 0, 1/2), uniform softmax: cross-entropy log 3, list weight 2, one list.
    assert value == pytest.approx(2.0 * math.log(3.0))


def test_list_mle_by_hand():
    # Order by labels: item 1 (s=2), item 0 (s=1): -log(e^2 / (e^2 + e^1)) - log(1) = log(1 + e^-1).
    value, _ = _value_and_grad(losses.ListMLELoss(), [[0.0, 1.0]], [[1.0, 2.0]])
    assert value == pytest.approx(math.log(1.0 + math.exp(-1.0)), rel=1e-6)


def test_approx_ndcg_is_minus_one_for_a_confident_perfect_ranking():
    value, _ = _value_and_grad(losses.ApproxNDCGLoss(temperature=0.01), [[2.0, 1.0, 0.0]], [[3.0, 2.0, 1.0]])
    assert value == pytest.approx(-1.0, abs=1e-4)


def _numpy_references():
    """Independent numpy definitions of several losses on lists without padding or label ties."""

    def hinge(y, s):
        return sum(max(0.0, 1.0 - (s[i] - s[j])) for i in range(len(y)) for j in range(len(y)) if y[i] > y[j])

    def logistic(y, s):
        return sum(math.log1p(math.exp(-(s[i] - s[j]))) for i in range(len(y)) for j in range(len(y)) if y[i] > y[j])

    def softmax(y, s):
        p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        return -(y / y.sum() * np.log(p)).sum() * y.sum()

    def list_mle(y, s):
        ordered = s[np.argsort(-y)]
        return sum(np.log(np.exp(ordered[k:]).sum()) - ordered[k] for k in range(len(y)))

    def approx_ndcg(y, s, temperature=0.1):
        ranks = 1.0 + np.array([sum(1.0 / (1.0 + np.exp(-(s[j] - s[i]) / temperature))
                                    for j in range(len(s)) if j != i) for i in range(len(s))])
        gains = 2.0 ** y - 1.0
        ideal = (np.sort(gains)[::-1] / np.log1p(np.arange(1, len(y) + 1))).sum()
        return -(gains / np.log1p(ranks)).sum() / ideal

    return {
        "PairwiseHingeLoss": (hinge, "item"),
        "PairwiseLogisticLoss": (logistic, "item"),
        "SoftmaxLoss": (softmax, "list"),
        "ListMLELoss": (list_mle, "list"),
        "ApproxNDCGLoss": (approx_ndcg, "list"),
    }


@pytest.mark.parametrize("name", list(_numpy_references()))
def test_matches_a_tie_free_numpy_definition(name):
    reference, divisor = _numpy_references()[name]
    rng = np.random.default_rng(3)
    labels = np.stack([rng.permutation(5) for _ in range(4)]).astype(np.float32)
    scores = rng.normal(size=(4, 5)).astype(np.float32)
    expected = sum(reference(y.astype(np.float64), s.astype(np.float64)) for y, s in zip(labels, scores))
    expected /= labels.size if divisor == "item" else len(labels)
    value, _ = _value_and_grad(getattr(losses, name)(), labels, scores)
    assert value == pytest.approx(expected, rel=1e-5)


# --- padding, ragged input, weights ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_LOSSES, ids=LOSS_IDS)
def test_ragged_batch_equals_its_padded_twin(cls):
    rng = np.random.default_rng(5)
    lengths = [4, 2, 3]
    labels = [rng.permutation(n).astype(np.float32).tolist() for n in lengths]
    scores = [rng.normal(size=n).astype(np.float32).tolist() for n in lengths]
    weights = [rng.uniform(0.5, 2.0, n).astype(np.float32).tolist() for n in lengths]
    dense_labels = [row + [-1.0] * (4 - len(row)) for row in labels]
    dense_scores = [row + [7.0] * (4 - len(row)) for row in scores]  # padded scores must not matter
    dense_weights = [row + [0.0] * (4 - len(row)) for row in weights]

    ragged_scores = tf.ragged.constant(scores)
    with tf.GradientTape() as tape:
        tape.watch(ragged_scores.flat_values)
        ragged_value = cls(ragged=True)(tf.ragged.constant(labels), ragged_scores, tf.ragged.constant(weights))
    ragged_grad = tf.convert_to_tensor(tape.gradient(ragged_value, ragged_scores.flat_values)).numpy()
    dense_value, dense_grad = _value_and_grad(cls(), dense_labels, dense_scores, tf.constant(dense_weights))

    assert ragged_value.numpy() == pytest.approx(dense_value, rel=1e-5, abs=1e-6)
    valid_grad = np.concatenate([dense_grad[i, :n] for i, n in enumerate(lengths)])
    np.testing.assert_allclose(ragged_grad, valid_grad, rtol=1e-4, atol=1e-6)
    padded_grad = np.concatenate([dense_grad[i, n:] for i, n in enumerate(lengths)])
    np.testing.assert_allclose(padded_grad, 0.0, atol=1e-6)


@pytest.mark.parametrize("cls", ALL_LOSSES, ids=LOSS_IDS)
def test_all_padding_batch_gives_zero_loss_and_finite_gradients(cls):
    value, grad = _value_and_grad(cls(), [[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]], [[0.3, -2.0, 5.0], [0.0, 0.0, 0.0]])
    assert value == 0.0
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("cls", ALL_LOSSES, ids=LOSS_IDS)
def test_single_item_lists_and_tied_scores_give_no_nan(cls):
    for labels, scores in [([[1.0], [0.0]], [[0.5], [-0.5]]), ([[1.0, 0.0, 2.0]], [[0.0, 0.0, 0.0]])]:
        value, grad = _value_and_grad(cls(), labels, scores)
        assert np.isfinite(value)
        assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("cls", ALL_LOSSES, ids=LOSS_IDS)
def test_per_list_weights_of_one_change_nothing(cls):
    labels, scores = [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]], [[0.1, 0.4, -0.3], [0.2, 0.0, 1.0]]
    plain, _ = _value_and_grad(cls(), labels, scores)
    weighted, _ = _value_and_grad(cls(), labels, scores, tf.ones([2, 1]))
    assert weighted == pytest.approx(plain, rel=1e-6)


def test_a_per_list_weight_of_shape_batch_is_accepted():
    labels, scores = [[1.0, 0.0], [0.0, 1.0]], [[0.1, 0.4], [0.2, 0.0]]
    loss = losses.PairwiseLogisticLoss()
    assert float(loss(labels, scores, [1.0, 3.0])) == pytest.approx(float(loss(labels, scores, [[1.0], [3.0]])))


def test_reductions():
    labels, scores = [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]], [[0.1, 0.4, -0.3], [0.2, 0.0, 1.0]]
    per_row = losses.PairwiseHingeLoss(reduction="none")(labels, scores)
    assert per_row.shape == (2, 3)
    total = losses.PairwiseHingeLoss(reduction="sum")(labels, scores)
    mean = losses.PairwiseHingeLoss()(labels, scores)
    assert float(total) == pytest.approx(float(tf.reduce_sum(per_row)))
    assert float(mean) == pytest.approx(float(total) / 6.0)
    assert float(losses.PairwiseHingeLoss(reduction="auto")(labels, scores)) == pytest.approx(float(mean))
    assert losses.SoftmaxLoss(reduction=None)(labels, scores).shape == (2,)
    assert losses.ListMLELoss(reduction="none")(labels, scores).shape == (2, 1)


# --- gradients ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss",
    [losses.PairwiseHingeLoss(), losses.PairwiseLogisticLoss(), losses.PairwiseSoftZeroOneLoss(),
     losses.PairwiseLogisticLoss(lambda_weight=losses.NDCGLambdaWeight()), losses.UniqueSoftmaxLoss(),
     losses.ApproxNDCGLoss(temperature=1.0), losses.ListMLELoss()],
    ids=lambda loss: type(loss).__name__,
)
def test_gradients_match_finite_differences(loss):
    rng = np.random.default_rng(11)
    labels = tf.constant([[2.0, 0.0, 1.0, -1.0, 3.0], [1.0, 0.0, 4.0, 2.0, -1.0]])
    scores = tf.constant(rng.normal(size=(2, 5)), tf.float64)
    theoretical, numerical = tf.test.compute_gradient(
        lambda s: tf.cast(loss(labels, tf.cast(s, tf.float32), tf.constant([[1.0], [2.0]])), tf.float64), [scores],
        delta=1e-3,
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=2e-3, atol=2e-3)


def test_pairwise_gradient_is_the_same_inside_tf_function():
    labels = tf.constant([[2.0, 0.0, 1.0, -1.0], [1.0, 0.0, 3.0, 2.0]])
    scores = tf.constant([[0.2, 0.9, -0.4, 3.0], [0.0, 0.5, 0.1, -1.0]])
    loss = losses.PairwiseLogisticLoss()
    eager = _value_and_grad(loss, labels, scores)

    @tf.function
    def graph():
        with tf.GradientTape() as tape:
            tape.watch(scores)
            value = loss(labels, scores)
        return value, tape.gradient(value, scores)

    value, grad = graph()
    assert value.numpy() == pytest.approx(eager[0])
    np.testing.assert_allclose(grad.numpy(), eager[1], rtol=1e-6)


# --- Gumbel ------------------------------------------------------------------------------------------------------


def test_gumbel_is_deterministic_for_a_seed_and_changes_with_it():
    labels, scores = [[1.0, 0.0, 2.0, 0.0]], [[0.3, 0.1, -0.2, 0.5]]
    first = float(losses.GumbelApproxNDCGLoss(seed=1)(labels, scores))
    assert float(losses.GumbelApproxNDCGLoss(seed=1)(labels, scores)) == first
    assert float(losses.GumbelApproxNDCGLoss(seed=2)(labels, scores)) != first


def test_gumbel_is_approx_ndcg_on_the_sampled_scores():
    labels = tf.constant([[1.0, 0.0, 2.0, -1.0]])
    scores = tf.constant([[0.3, 0.1, -0.2, 0.5]])
    loss = losses.GumbelApproxNDCGLoss(seed=4, sample_size=3)
    noise = loss.gumbel_noise([1, 3, 4])[0]
    sampled = tf.nn.log_softmax(tf.where(labels >= 0, scores + noise, math.log(1e-20)))
    expected = losses.ApproxNDCGLoss()(tf.repeat(labels, 3, axis=0), sampled)
    assert float(loss(labels, scores)) == pytest.approx(float(expected), rel=1e-5)


# --- bad input -----------------------------------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        losses.SoftmaxLoss()(tf.zeros([2, 3]), tf.zeros([2, 4]))


def test_weight_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"sample_weight \(2, 2\).*\(2, 3\)"):
        losses.PairwiseHingeLoss()(tf.zeros([2, 3]), tf.zeros([2, 3]), tf.ones([2, 2]))


def test_dense_labels_with_ragged_scores_are_rejected():
    with pytest.raises(ValueError, match=r"labels \(1, 2\) are dense but scores .* is a tf.RaggedTensor"):
        losses.SoftmaxLoss(ragged=True)(tf.zeros([1, 2]), tf.ragged.constant([[1.0, 0.0]]))


@pytest.mark.parametrize("name", ["softmax", "pairwise_logistic", "sigmoid_cross_entropy"])
def test_ragged_labels_with_padded_scores_equal_ragged_scores(name):
    labels = tf.ragged.constant([[1.0, 0.0, 2.0], [0.0, 1.0]])
    scores = tf.ragged.constant([[0.3, -0.2, 0.9], [0.5, 0.1]])
    padded = scores.to_tensor(123.0)  # what a Keras model returns; the padded slot is not a list item
    loss = losses.get(name, ragged=True)
    assert float(loss(labels, padded)) == pytest.approx(float(loss(labels, scores)), rel=1e-6)


@pytest.mark.parametrize("input_name", ["labels", "scores", "sample_weight"])
def test_ragged_input_needs_ragged_true(input_name):
    inputs = {"labels": tf.constant([[1.0, 0.0]]), "scores": tf.constant([[0.2, 0.1]]),
              "sample_weight": tf.constant([[1.0, 2.0]])}
    inputs[input_name] = tf.RaggedTensor.from_tensor(inputs[input_name])
    with pytest.raises(ValueError, match=f"PairwiseHingeLoss: {input_name} .*ragged=True"):
        losses.PairwiseHingeLoss()(inputs["labels"], inputs["scores"], inputs["sample_weight"])


RAGGED_SPEC = tf.RaggedTensorSpec([None, None], tf.float32, ragged_rank=1)


@pytest.mark.parametrize("name", ["softmax", "pairwise_hinge", "mean_squared"])
def test_ragged_lists_of_different_lengths_are_rejected_inside_tf_function(name):
    loss = losses.get(name, ragged=True)

    @tf.function(input_signature=[RAGGED_SPEC, RAGGED_SPEC])
    def value(labels, scores):
        return loss(labels, scores)

    # Both pad to [2, 2]: without the check the scores would silently belong to other items.
    labels = tf.ragged.constant([[1.0, 0.0], [1.0]])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"ragged labels and scores differ in list lengths"):
        value(labels, tf.ragged.constant([[1.0], [0.0, 1.0]]))
    assert np.isfinite(float(value(labels, tf.ragged.constant([[1.0, 0.5], [0.0]]))))


def test_ragged_weights_of_different_lengths_are_rejected_inside_tf_function():
    loss = losses.SoftmaxLoss(ragged=True)

    @tf.function(input_signature=[RAGGED_SPEC, RAGGED_SPEC, RAGGED_SPEC])
    def value(labels, scores, weights):
        return loss(labels, scores, weights)

    labels = tf.ragged.constant([[1.0, 0.0], [1.0]])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"ragged labels and sample_weight differ"):
        value(labels, labels, tf.ragged.constant([[1.0], [2.0, 1.0]]))


def test_padded_scores_narrower_than_a_ragged_list_are_rejected():
    with pytest.raises(ValueError, match=r"list lengths \[3, 1\] and scores list lengths \[2, 1\]"):
        losses.SoftmaxLoss(ragged=True)(tf.ragged.constant([[1.0, 0.0, 2.0], [1.0]]), tf.zeros([2, 2]))


# --- padded slots never reach a loss -------------------------------------------------------------------------------


def _losses_with_lambda_weights():
    """Every registered loss, and each loss that uses lambda weights with each kind it uses."""
    pair_weights = [losses.NDCGLambdaWeight(topn=2), losses.DCGLambdaWeight(smooth_fraction=0.5),
                    losses.NDCGLambdaWeightV2(topn=2), losses.LabelDiffLambdaWeight(),
                    losses.PrecisionLambdaWeight(topn=2)]
    cases = [(name, None) for name in losses.names()]
    for name in ["pairwise_hinge", "pairwise_logistic", "pairwise_soft_zero_one", "pairwise_mse"]:
        cases += [(name, weight) for weight in pair_weights]
    cases += [("softmax", losses.NDCGLambdaWeight()), ("softmax", losses.DCGLambdaWeight(topn=2)),
              ("list_mle", losses.ListMLELambdaWeight())]
    return cases


@pytest.mark.parametrize("name, lambda_weight", _losses_with_lambda_weights(),
                         ids=[f"{name}-{type(weight).__name__}" for name, weight in _losses_with_lambda_weights()])
@pytest.mark.parametrize("padded_score", [float("nan"), float("inf"), -float("inf"), ops.PADDING_SCORE],
                         ids=["nan", "inf", "-inf", "padding_score"])
def test_padded_scores_never_reach_the_loss(name, lambda_weight, padded_score):
    labels = [[2.0, -1.0, 0.0, 1.0], [1.0, 0.0, -1.0, -1.0]]
    scores = [[0.4, 0.0, -0.3, 1.1], [0.2, 0.7, 0.0, 0.0]]
    polluted = [[0.4, padded_score, -0.3, 1.1], [0.2, 0.7, padded_score, padded_score]]
    kwargs = {} if lambda_weight is None else {"lambda_weight": lambda_weight}
    expected_value, expected_grad = _value_and_grad(losses.get(name, **kwargs), labels, scores)
    value, grad = _value_and_grad(losses.get(name, **kwargs), labels, polluted)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(expected_value, rel=1e-6, abs=1e-7)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(grad[[0, 1, 1], [1, 2, 3]], 0.0)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_non_positive_temperature_is_rejected_at_construction(temperature):
    with pytest.raises(ValueError, match=f"temperature={temperature}"):
        losses.PairwiseLogisticLoss(temperature=temperature)


@pytest.mark.parametrize("cls", [losses.NDCGLambdaWeight, losses.DCGLambdaWeight, losses.NDCGLambdaWeightV2,
                                 losses.PrecisionLambdaWeight])
def test_topn_below_one_is_rejected(cls):
    with pytest.raises(ValueError, match="topn=0"):
        cls(topn=0)


def test_other_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="reduction='average'"):
        losses.SoftmaxLoss(reduction="average")
    with pytest.raises(ValueError, match="smooth_fraction=1.5"):
        losses.NDCGLambdaWeight(smooth_fraction=1.5)
    with pytest.raises(ValueError, match="sample_size=0"):
        losses.GumbelApproxNDCGLoss(sample_size=0)
    with pytest.raises(ValueError, match="gumbel_temperature=0"):
        losses.GumbelApproxNDCGLoss(gumbel_temperature=0)
    with pytest.raises(ValueError, match="ListMLELoss"):
        losses.PairwiseHingeLoss(lambda_weight=losses.ListMLELambdaWeight())


@pytest.mark.parametrize("loss_class, temperature", [
    (losses.PairwiseHingeLoss, 1.0), (losses.PairwiseLogisticLoss, 1.0), (losses.PairwiseSoftZeroOneLoss, 1.0),
    (losses.PairwiseMSELoss, 1.0), (losses.ApproxNDCGLoss, 0.1), (losses.ApproxMRRLoss, 0.1),
], ids=lambda value: getattr(value, "__name__", str(value)))
def test_constructor_takes_tf_rankings_arguments_in_order_with_its_default_temperature(loss_class, temperature):
    assert list(inspect.signature(loss_class).parameters) == [
        "reduction", "name", "lambda_weight", "temperature", "ragged", "kwargs"]
    assert loss_class().temperature == temperature
    loss = loss_class("sum", "ranked", losses.NDCGLambdaWeight(topn=2), 2.0, True)
    assert (loss.reduction, loss.name, loss.lambda_weight.topn, loss.temperature, loss.ragged) == (
        "sum", "ranked", 2, 2.0, True)


@pytest.mark.parametrize("loss_class", [losses.PairwiseLogisticLoss, losses.YetiLogisticLoss])
def test_pairwise_losses_refuse_a_lambda_weight_without_pair_weights(loss_class):
    with pytest.raises(ValueError, match="ListMLELambdaWeight.*has no pair weights; use it with ListMLELoss"):
        loss_class(lambda_weight=losses.ListMLELambdaWeight())



def test_precision_lambda_weight_without_topn_constructs_but_a_loss_using_it_raises():
    lambda_weight = losses.PrecisionLambdaWeight()
    assert lambda_weight.get_config()["topn"] is None
    loss = losses.PairwiseLogisticLoss(lambda_weight=lambda_weight)
    with pytest.raises(ValueError, match=r"PrecisionLambdaWeight\(topn=None\).*PrecisionLambdaWeight\(topn=5\)"):
        loss([[1.0, 0.0, 2.0]], [[0.1, 0.5, 0.3]])


# --- registry ------------------------------------------------------------------------------------------------------


def test_registry_accepts_short_and_tf_ranking_names():
    assert isinstance(losses.get("pairwise_hinge"), losses.PairwiseHingeLoss)
    assert isinstance(losses.get("pairwise_hinge_loss"), losses.PairwiseHingeLoss)
    assert isinstance(losses.get("mse"), losses.MeanSquaredLoss)
    loss = losses.get("approx_ndcg_loss", temperature=0.5, ragged=True)
    assert (loss.temperature, loss.ragged) == (0.5, True)
    keys = ["pairwise_hinge_loss", "pairwise_logistic_loss", "pairwise_soft_zero_one_loss", "pairwise_mse_loss",
            "softmax_loss", "unique_softmax_loss", "sigmoid_cross_entropy_loss", "mean_squared_loss",
            "list_mle_loss", "approx_ndcg_loss", "approx_mrr_loss", "gumbel_approx_ndcg_loss"]
    for key in keys:
        assert isinstance(losses.get(key), losses.RankingLoss)


def test_names_are_sorted_short_forms():
    names = losses.names()
    assert names == sorted(names)
    assert "pairwise_hinge" in names and "mse" in names
    assert not any(name.endswith("_loss") for name in names)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="pairwise_hinge.*softmax"):
        losses.get("pairwise_hinj")


# --- serialisation and Keras ---------------------------------------------------------------------------------------

LAMBDA_WEIGHTS = [
    losses.NDCGLambdaWeight(topn=3, smooth_fraction=0.5),
    losses.DCGLambdaWeight(normalized=True, gain_fn=losses.lambda_weights.pow_minus_1),
    losses.NDCGLambdaWeightV2(topn=2),
    losses.LabelDiffLambdaWeight(),
    losses.PrecisionLambdaWeight(topn=2),
]


@pytest.mark.parametrize("lambda_weight", LAMBDA_WEIGHTS, ids=lambda w: type(w).__name__)
def test_config_round_trip_keeps_nested_lambda_weights(lambda_weight):
    loss = losses.PairwiseLogisticLoss(lambda_weight=lambda_weight, temperature=0.5, name="ranking")
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is losses.PairwiseLogisticLoss
    assert restored.get_config() == loss.get_config()
    labels, scores = [[1.0, 0.0, 2.0, 0.0]], [[0.3, 0.1, -0.2, 0.5]]
    assert float(restored(labels, scores)) == pytest.approx(float(loss(labels, scores)))


@pytest.mark.parametrize("cls", ALL_LOSSES, ids=LOSS_IDS)
def test_every_loss_round_trips_through_its_config(cls):
    loss = cls(reduction="sum", name="x")
    restored = cls.from_config(loss.get_config())
    assert restored.get_config() == loss.get_config()


def test_list_mle_lambda_weight_round_trips():
    loss = losses.ListMLELoss(lambda_weight=losses.ListMLELambdaWeight(rank_discount_fn=losses.lambda_weights.inverse))
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.lambda_weight.rank_discount_fn is losses.lambda_weights.inverse


def _tiny_model():
    inputs = keras.Input(shape=(4, 3))
    outputs = keras.layers.Reshape((4,))(keras.layers.Dense(1)(inputs))
    return keras.Model(inputs, outputs)


def test_compiled_model_saves_and_loads_with_the_same_loss(tmp_path):
    model = _tiny_model()
    loss = losses.SoftmaxLoss(lambda_weight=losses.NDCGLambdaWeight(topn=2), temperature=2.0)
    model.compile(optimizer="sgd", loss=loss)
    features = np.random.default_rng(0).normal(size=(8, 4, 3)).astype(np.float32)
    labels = np.random.default_rng(1).integers(-1, 3, (8, 4)).astype(np.float32)
    model.fit(features, labels, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert type(restored.loss) is losses.SoftmaxLoss
    assert restored.loss.get_config() == loss.get_config()
    assert isinstance(restored.loss.lambda_weight, losses.NDCGLambdaWeight)


def test_fit_with_padded_lists_and_per_item_weights():
    model = _tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=losses.PairwiseLogisticLoss())
    rng = np.random.default_rng(2)
    features = rng.normal(size=(32, 4, 3)).astype(np.float32)
    labels = rng.integers(-1, 3, (32, 4)).astype(np.float32)
    weights = rng.uniform(0.5, 1.5, (32, 4)).astype(np.float32)
    history = model.fit(features, labels, sample_weight=weights, batch_size=8, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))


class RaggedScorer(keras.Model):
    """Scores each item of a ragged batch of lists [batch, (list_size), features] with one Dense layer."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, features):
        return tf.ragged.map_flat_values(lambda items: tf.squeeze(self.dense(items), -1), features)


@pytest.mark.parametrize("loss", [losses.ApproxNDCGLoss(ragged=True), losses.PairwiseHingeLoss(ragged=True)],
                         ids=lambda loss: type(loss).__name__)
def test_fit_with_ragged_lists(loss):
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 6, 24)
    features = tf.RaggedTensor.from_row_lengths(rng.normal(size=(lengths.sum(), 3)).astype(np.float32), lengths)
    labels = tf.RaggedTensor.from_row_lengths(rng.integers(0, 3, lengths.sum()).astype(np.float32), lengths)
    weights = tf.RaggedTensor.from_row_lengths(rng.uniform(0.5, 1.5, lengths.sum()).astype(np.float32), lengths)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels, weights)).batch(8)
    model = RaggedScorer()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    history = model.fit(dataset, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    before = model.evaluate(dataset, verbose=0)
    assert np.isfinite(before)


def test_ragged_lists_of_different_lengths_are_rejected():
    with pytest.raises(ValueError, match=r"list lengths \[2, 1\].*list lengths \[1, 2\]"):
        losses.SoftmaxLoss(ragged=True)(
            tf.ragged.constant([[1.0, 0.0], [1.0]]), tf.ragged.constant([[1.0], [0.0, 1.0]])
        )


def test_a_new_pairwise_loss_needs_only_pairwise_loss_and_gets_the_autodiff_gradient():
    class PairwiseSquaredHingeLoss(losses.PairwiseLoss):
        def pairwise_loss(self, pairwise_logits):
            return tf.square(tf.nn.relu(1.0 - pairwise_logits))

    labels = tf.constant([[2.0, 0.0, 1.0, -1.0], [1.0, 0.0, 3.0, 2.0]])
    scores = tf.constant([[0.2, 0.9, -0.4, 3.0], [0.0, 0.5, 0.1, -1.0]])
    value, grad = _value_and_grad(PairwiseSquaredHingeLoss(), labels, scores)
    with tf.GradientTape() as tape:
        tape.watch(scores)
        pairs = tf.cast(ops.preferred_pairs(labels, labels >= 0), tf.float32)
        diff = scores[:, :, None] - scores[:, None, :]
        expected = tf.reduce_sum(pairs * tf.square(tf.nn.relu(1.0 - diff))) / 8.0
    assert value == pytest.approx(float(expected))
    np.testing.assert_allclose(grad, tape.gradient(expected, scores).numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", ALL_LOSSES, ids=LOSS_IDS)
def test_empty_ragged_lists_add_nothing(cls):
    labels = tf.ragged.constant([[], []], dtype=tf.float32, ragged_rank=1)
    scores = tf.ragged.constant([[], []], dtype=tf.float32, ragged_rank=1)
    assert float(cls(ragged=True)(labels, scores)) == 0.0
    with_empty = cls(ragged=True)(tf.ragged.constant([[], [1.0, 0.0]]), tf.ragged.constant([[], [0.3, 0.1]]))
    assert np.isfinite(with_empty.numpy())


# --- numerical stability -------------------------------------------------------------------------------------------


def _list_mle_reference(labels, scores):
    """ListMLE of one batch in float64 numpy, loss and gradient, from its formula: items sorted by label
    (descending, ties in input order), padded items (label < 0) last with score log(1e-10), as TF Ranking does."""
    labels, scores = np.asarray(labels, np.float64), np.asarray(scores, np.float64)
    total, grad = 0.0, np.zeros_like(scores)
    for row, (y, s) in enumerate(zip(labels, scores)):
        valid = y >= 0
        if not valid.any():
            continue
        s = np.where(valid, s, math.log(1e-10))
        order = sorted(range(len(y)), key=lambda i: (not valid[i], -y[i], i))
        for k in range(len(order)):
            tail = np.array(order[k:])
            top = s[tail].max()
            probabilities = np.exp(s[tail] - top) / np.exp(s[tail] - top).sum()
            total += top + math.log(np.exp(s[tail] - top).sum()) - s[order[k]]
            grad[row, tail] += probabilities
            grad[row, order[k]] -= 1.0
        grad[row] = np.where(valid, grad[row], 0.0)
    return total / len(labels), grad / len(labels)


@pytest.mark.parametrize(
    "labels, scores",
    [([[2.0, 1.0, 0.0]], [[50.0, 0.0, -50.0]]),
     ([[2.0, 1.0, -1.0]], [[70.0, 0.0, -1e9]]),
     ([[2.0, 1.0, 0.0]], [[0.0, -1e9, 5.0]]),
     ([[0.0, 3.0, 1.0, 2.0]], [[-80.0, 80.0, 0.0, 40.0]]),
     ([[1.0, 0.0, -1.0, 2.0]], [[-200.0, 150.0, 3.0, -60.0]])],
)
def test_list_mle_is_finite_and_exact_far_from_zero(labels, scores):
    value, grad = _value_and_grad(losses.ListMLELoss(), labels, scores)
    expected_value, expected_grad = _list_mle_reference(labels, scores)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(expected_value, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-5)


def test_list_mle_matches_the_reference_on_ordinary_scores():
    rng = np.random.default_rng(12)
    labels = rng.integers(-1, 4, (5, 6)).astype(np.float32)
    scores = rng.normal(scale=3.0, size=(5, 6)).astype(np.float32)
    value, grad = _value_and_grad(losses.ListMLELoss(), labels, scores)
    expected_value, expected_grad = _list_mle_reference(labels, scores)
    assert value == pytest.approx(expected_value, rel=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_list_mle_with_lambda_weight_is_finite_far_from_zero():
    loss = losses.ListMLELoss(lambda_weight=losses.ListMLELambdaWeight())
    value, grad = _value_and_grad(loss, [[2.0, 1.0, 0.0]], [[50.0, 0.0, -50.0]])
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(0.0, abs=1e-6)  # every term is log(1 + e^-50) or 0


def test_list_mle_is_finite_far_from_zero_inside_tf_function():
    labels = tf.constant([[2.0, 1.0, -1.0]])
    scores = tf.constant([[70.0, 0.0, -1e9]])
    loss = losses.ListMLELoss()

    @tf.function
    def value_and_grad():
        with tf.GradientTape() as tape:
            tape.watch(scores)
            value = loss(labels, scores)
        return value, tape.gradient(value, scores)

    value, grad = value_and_grad()
    expected_value, expected_grad = _list_mle_reference(labels.numpy(), scores.numpy())
    assert float(value) == pytest.approx(expected_value, abs=1e-5)
    np.testing.assert_allclose(grad.numpy(), expected_grad, atol=1e-5)


# --- empty batches -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", losses.names())
def test_empty_batch_gives_zero_loss_and_an_empty_gradient(name):
    labels = tf.zeros([0, 4])
    value, grad = _value_and_grad(losses.get(name), labels, tf.zeros([0, 4]))
    assert value == 0.0
    assert grad.shape == (0, 4)


@pytest.mark.parametrize("name", losses.names())
def test_empty_batch_gives_zero_loss_inside_tf_function(name):
    loss = losses.get(name)

    @tf.function(input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None, 4])])
    def value(labels, scores):
        return loss(labels, scores)

    assert float(value(tf.zeros([0, 4]), tf.zeros([0, 4]))) == 0.0


# --- one definition of each argument rule --------------------------------------------------------------------------


@pytest.mark.parametrize("topn", [0, -2, 1.5, True, "3"])
def test_lambda_weights_and_metrics_reject_the_same_topn_values(topn):
    from tfrank import metrics

    with pytest.raises(ValueError, match=f"topn={topn!r}: NDCGLambdaWeight needs topn"):
        losses.NDCGLambdaWeight(topn=topn)
    with pytest.raises(ValueError, match=f"topn={topn!r}: NDCGMetric needs topn"):
        metrics.NDCGMetric(topn=topn)


def test_lambda_weights_and_metrics_accept_numpy_integer_topn():
    from tfrank import metrics

    assert losses.NDCGLambdaWeight(topn=np.int64(3)).topn == 3
    assert metrics.NDCGMetric(topn=np.int64(3)).topn == 3
    assert type(losses.NDCGLambdaWeight(topn=np.int64(3)).topn) is int


def test_gain_and_discount_functions_serialise_under_their_registered_tfrank_names():
    config = losses.NDCGLambdaWeight().get_config()
    assert config["gain_fn"]["config"] == "tfrank>pow_minus_1"
    assert config["rank_discount_fn"]["config"] == "tfrank>log2_inverse"
    assert keras.saving.deserialize_keras_object(config["gain_fn"]) is ops.pow_minus_1


# --- abstract bases ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [losses.RankingLoss, losses.PairwiseLoss, losses.PointwiseLoss, losses.ListwiseLoss,
                                  losses.LambdaWeight], ids=lambda base: base.__name__)
def test_abstract_bases_fail_at_construction(base):
    with pytest.raises(TypeError, match=f"abstract.*{base.__name__}|{base.__name__}.*abstract"):
        base()


def test_a_subclass_missing_its_method_fails_at_construction():
    class Incomplete(losses.PairwiseLoss):
        pass

    with pytest.raises(TypeError, match="pairwise_loss"):
        Incomplete()


def test_list_mle_lambda_weight_has_no_pair_weights():
    with pytest.raises(ValueError, match="ListMLELambdaWeight.*no pair weights; use it with ListMLELoss"):
        losses.ListMLELambdaWeight().pair_weights(tf.zeros([1, 2]), tf.ones([1, 2]))


def test_fit_with_ragged_labels_and_a_functional_model_padded_output():
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 5, 16)
    lengths[0] = 4  # the batch pads to the model's list size, so both losses divide by 16 * 4
    labels = tf.RaggedTensor.from_row_lengths(rng.integers(0, 3, lengths.sum()).astype(np.float32), lengths)
    features = rng.normal(size=(16, 4, 3)).astype(np.float32)
    model = _tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=losses.PairwiseLogisticLoss(ragged=True))
    model.fit(tf.data.Dataset.from_tensor_slices((features, labels)).batch(8), epochs=1, verbose=0)
    ragged_loss = model.evaluate(tf.data.Dataset.from_tensor_slices((features, labels)).batch(16), verbose=0)
    scores = model.predict(features, verbose=0)
    padded_loss = losses.PairwiseLogisticLoss()(labels.to_tensor(-1.0, shape=[16, 4]), scores)
    assert ragged_loss == pytest.approx(float(padded_loss), rel=1e-5)


# --- losses whose scores are a vector per item -------------------------------------------------------------------

ITEM_VECTOR_LOSSES = [(losses.OrdinalLoss, {"ordinal_size": 3}, 3), (losses.ClickEMLoss, {}, 2),
                      (losses.MixtureEMLoss, {}, 2)]


@pytest.mark.parametrize("cls, kwargs, depth", ITEM_VECTOR_LOSSES, ids=lambda x: getattr(x, "__name__", None))
@pytest.mark.parametrize("padded_score", [float("nan"), float("inf"), ops.PADDING_SCORE], ids=["nan", "inf", "pad"])
def test_padded_score_vectors_never_reach_the_loss(cls, kwargs, depth, padded_score):
    labels = [[2.0, -1.0, 0.0, 1.0], [1.0, 0.0, -1.0, -1.0]]
    scores = np.linspace(-1.0, 1.0, 8 * depth).reshape(2, 4, depth)
    polluted = scores.copy()
    polluted[0, 1] = polluted[1, 2:] = padded_score
    expected_value, expected_grad = _value_and_grad(cls(**kwargs), labels, scores)
    value, grad = _value_and_grad(cls(**kwargs), labels, polluted)
    assert np.isfinite(value) and value == pytest.approx(expected_value, rel=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(grad[[0, 1, 1], [1, 2, 3]], 0.0)


@pytest.mark.parametrize("cls, kwargs, depth", ITEM_VECTOR_LOSSES, ids=lambda x: getattr(x, "__name__", None))
def test_item_vector_losses_give_zero_on_an_empty_batch_inside_tf_function(cls, kwargs, depth):
    loss = cls(**kwargs)

    @tf.function(input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None, 4, depth])])
    def value(labels, scores):
        return loss(labels, scores)

    assert float(value(tf.zeros([0, 4]), tf.zeros([0, 4, depth]))) == 0.0


@pytest.mark.parametrize("cls, kwargs, depth", ITEM_VECTOR_LOSSES, ids=lambda x: getattr(x, "__name__", None))
def test_item_vector_losses_take_padded_model_scores_for_ragged_labels(cls, kwargs, depth):
    labels = tf.ragged.constant([[1.0, 0.0, 2.0], [0.0, 1.0]])
    ragged_scores = tf.ragged.constant([[[0.1] * depth, [0.4] * depth, [-0.3] * depth], [[0.2] * depth,
                                                                                          [0.9] * depth]],
                                       ragged_rank=1)
    padded_scores = ragged_scores.to_tensor(5.0, shape=[2, 6, depth])  # a model's fixed-width output
    ragged_value = cls(ragged=True, **kwargs)(labels, ragged_scores)
    padded_value = cls(ragged=True, **kwargs)(labels, padded_scores)
    dense_value = cls(**kwargs)(labels.to_tensor(-1.0), ragged_scores.to_tensor(0.0))
    assert float(ragged_value) == pytest.approx(float(padded_value), rel=1e-6)
    # The dense batch is 2 x 3, the ragged one 2 x 3 once padded: the same reduction.
    assert float(ragged_value) == pytest.approx(float(dense_value), rel=1e-6)


@pytest.mark.parametrize("cls, kwargs, depth", ITEM_VECTOR_LOSSES, ids=lambda x: getattr(x, "__name__", None))
def test_item_vector_losses_reject_scores_of_the_wrong_shape(cls, kwargs, depth):
    with pytest.raises(ValueError, match=rf"scores \(1, 2\): {cls.__name__} needs scores \[batch, list_size, "):
        cls(**kwargs)([[1.0, 0.0]], [[0.2, 0.1]])
    if cls is losses.MixtureEMLoss:  # any number of mixed models
        assert np.isfinite(float(cls(**kwargs)([[1.0, 0.0]], np.zeros([1, 2, depth + 1]))))
        return
    with pytest.raises(ValueError, match=rf"scores \(1, 2, {depth + 1}\): {cls.__name__} needs"):
        cls(**kwargs)([[1.0, 0.0]], np.zeros([1, 2, depth + 1]))


def test_calibrated_softmax_takes_ragged_lists_like_their_padded_batch():
    labels = tf.ragged.constant([[1.0, 0.0, 2.0], [0.0, 1.0]])
    scores = tf.ragged.constant([[0.1, 0.4, -0.3], [0.2, 0.9]])
    weights = tf.ragged.constant([[1.0, 2.0, 0.5], [3.0, 1.0]])
    for lambda_weight in (None, losses.NDCGLambdaWeight()):
        ragged = losses.CalibratedSoftmaxLoss(virtual_label=0.5, ragged=True, lambda_weight=lambda_weight)
        dense = losses.CalibratedSoftmaxLoss(virtual_label=0.5, lambda_weight=lambda_weight)
        assert float(ragged(labels, scores, weights)) == pytest.approx(
            float(dense(labels.to_tensor(-1.0), scores.to_tensor(0.0), weights.to_tensor(0.0))), rel=1e-6)


def test_calibrated_softmax_rejects_a_negative_virtual_label():
    with pytest.raises(ValueError, match="virtual_label=-0.5: CalibratedSoftmaxLoss needs a virtual label >= 0"):
        losses.CalibratedSoftmaxLoss(virtual_label=-0.5)


def test_mixture_em_ignores_its_temperature_as_tf_ranking_does():
    labels, scores = [[1.0, 0.0, 1.0]], [[[0.6, 0.9], [0.8, 0.2], [-0.4, 0.3]]]
    assert float(losses.MixtureEMLoss(temperature=4.0)(labels, scores)) == float(losses.MixtureEMLoss()(labels, scores))
    assert losses.MixtureEMLoss(temperature=4.0).get_config()["temperature"] == 4.0


def test_coupled_rank_distil_is_deterministic_and_its_seed_picks_the_permutations():
    labels, scores = [[0.0, 2.0, 1.0, 3.0]], [[0.1, 0.7, 0.3, -0.2]]
    first = float(losses.CoupledRankDistilLoss(sample_size=2)(labels, scores))
    assert first == float(losses.CoupledRankDistilLoss(sample_size=2)(labels, scores))
    assert first != float(losses.CoupledRankDistilLoss(sample_size=2, seed=1)(labels, scores))


def test_yeti_logistic_defaults_to_the_yeti_lambda_weight():
    loss = losses.YetiLogisticLoss()
    assert type(loss.lambda_weight) is losses.YetiDCGLambdaWeight
    assert loss.lambda_weight.get_config()["normalized"] is False
    assert (loss.sample_size, loss.gumbel_temperature, loss.seed) == (8, 1.0, None)
