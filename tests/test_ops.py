"""tfrank.ops: masks, ragged<->padded, sorting, ranks, smooth ranks, pair helpers, gains and discounts."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfrank import ops


def test_is_label_valid_marks_padding():
    assert ops.is_label_valid(tf.constant([[1.0, 0.0, ops.PADDING_LABEL]])).numpy().tolist() == [[True, True, False]]


def test_ragged_to_dense_pads_labels_scores_and_item_weights():
    labels = tf.ragged.constant([[1.0, 0.0], [2.0]])
    scores = tf.ragged.constant([[0.5, 0.1], [0.3]])
    weights = tf.ragged.constant([[2.0, 3.0], [4.0]])
    dense_labels, dense_scores, dense_weights, mask = ops.ragged_to_dense(labels, scores, weights)
    assert dense_labels.numpy().tolist() == [[1.0, 0.0], [2.0, ops.PADDING_LABEL]]
    assert dense_scores.numpy()[1, 1] < -1e5
    assert dense_weights.numpy().tolist() == [[2.0, 3.0], [4.0, 0.0]]
    assert mask.numpy().tolist() == [[True, True], [True, False]]


def test_ragged_to_dense_passes_per_list_weights_through():
    weights = tf.constant([[2.0], [3.0]])
    _, _, out, _ = ops.ragged_to_dense(tf.ragged.constant([[1.0], [0.0, 1.0]]), None, weights)
    assert out is weights


def test_sort_by_scores_keeps_topn_and_puts_masked_items_last():
    scores = tf.constant([[1.0, 3.0, 2.0, 9.0]])
    features = tf.constant([[10, 30, 20, 90]])
    mask = tf.constant([[True, True, True, False]])
    assert ops.sort_by_scores(scores, [features], mask=mask)[0].numpy().tolist() == [[30, 20, 10, 90]]
    assert ops.sort_by_scores(scores, [features], topn=2)[0].numpy().tolist() == [[90, 30]]


def test_sorted_ranks_example():
    assert ops.sorted_ranks(tf.constant([[1.0, 3.5, 2.1]])).numpy().tolist() == [[3, 1, 2]]


def test_ranks_by_scores_puts_invalid_last_and_keeps_ties_in_input_order():
    scores = tf.constant([[1.0, 3.5, 2.1, 9.0], [1.0, 1.0, 0.0, 2.0]])
    mask = tf.constant([[True, True, True, False], [True, True, True, True]])
    assert ops.ranks_by_scores(scores, mask).numpy().tolist() == [[3, 1, 2, 4], [2, 3, 4, 1]]


def test_approx_ranks_approach_exact_ranks_at_low_temperature():
    scores = tf.constant([[1.0, 3.0, 2.0]])
    np.testing.assert_allclose(ops.approx_ranks(scores / 0.01).numpy(), [[3.0, 1.0, 2.0]], atol=1e-6)


def test_approx_ranks_of_equal_scores_are_the_middle_rank():
    np.testing.assert_allclose(ops.approx_ranks(tf.zeros([1, 3])).numpy(), [[2.0, 2.0, 2.0]])


def test_pairwise_difference():
    assert ops.pairwise_difference(tf.constant([[1.0, 4.0]])).numpy().tolist() == [[[0.0, -3.0], [3.0, 0.0]]]


def test_preferred_pairs_need_both_items_valid_and_a_higher_first_label():
    labels = tf.constant([[2.0, 1.0, -1.0, 1.0]])
    pairs = ops.preferred_pairs(labels, ops.is_label_valid(labels)).numpy()[0]
    expected = np.zeros((4, 4), bool)
    expected[0, 1] = expected[0, 3] = True
    np.testing.assert_array_equal(pairs, expected)


def test_preferred_pairs_respect_a_mask_beyond_the_labels():
    pairs = ops.preferred_pairs(tf.constant([[2.0, 1.0]]), tf.constant([[True, False]]))
    assert not pairs.numpy().any()


def test_gains_and_discounts():
    assert ops.pow_minus_1(tf.constant([0.0, 1.0, 3.0])).numpy().tolist() == [0.0, 1.0, 7.0]
    assert ops.identity(tf.constant([0.0, 3.0])).numpy().tolist() == [0.0, 3.0]
    np.testing.assert_allclose(ops.log2_inverse(tf.constant([0.0, 1.0, 3.0])).numpy(), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(ops.ln_inverse(tf.constant([0.0, 1.0])).numpy(), [0.0, 1.0 / math.log(2.0)])
    np.testing.assert_allclose(ops.inverse(tf.constant([0.0, 4.0])).numpy(), [0.0, 0.25])
    assert ops.is_greater_equal_1(tf.constant([0.0, 1.0, 2.5])).numpy().tolist() == [False, True, True]


def test_lambda_weights_and_metrics_use_the_ops_gains_and_discounts():
    from tfrank.losses import lambda_weights
    from tfrank.metrics import NDCGMetric

    assert lambda_weights.pow_minus_1 is ops.pow_minus_1 and lambda_weights.log2_inverse is ops.log2_inverse
    metric = NDCGMetric()
    assert metric.gain_fn is ops.pow_minus_1 and metric.rank_discount_fn is ops.log2_inverse


# --- prepare_lists: the one input rule of losses and metrics ---------------------------------------------------------


def test_prepare_lists_masks_padding_and_sanitises_its_scores():
    labels, scores, weights, mask = ops.prepare_lists(
        [[1.0, -1.0, 0.0], [2.0, float("nan"), -1.0]], [[0.5, float("nan"), 0.1], [0.2, 0.3, -float("inf")]]
    )
    assert mask.numpy().tolist() == [[True, False, True], [True, False, False]]
    assert labels.numpy().tolist() == [[1.0, ops.PADDING_LABEL, 0.0], [2.0, ops.PADDING_LABEL, ops.PADDING_LABEL]]
    assert scores.numpy().tolist() == [[0.5, 0.0, pytest.approx(0.1)], [pytest.approx(0.2), 0.0, 0.0]]
    assert weights is None


@pytest.mark.parametrize("weights, shape", [(2.0, ()), ([1.0, 2.0], (2, 1)), ([[1.0], [2.0]], (2, 1)),
                                            ([[1.0, 2.0], [3.0, 4.0]], (2, 2))])
def test_prepare_lists_reads_scalar_per_list_and_per_item_weights(weights, shape):
    _, _, out, _ = ops.prepare_lists([[1.0, 0.0], [0.0, 1.0]], [[0.1, 0.2], [0.3, 0.4]], weights)
    assert tuple(out.shape) == shape


def test_prepare_lists_pads_ragged_lists_and_padded_scores_alike():
    labels = tf.ragged.constant([[1.0, 0.0], [2.0]])
    from_ragged = ops.prepare_lists(labels, tf.ragged.constant([[0.5, 0.1], [0.3]]), ragged=True)
    from_padded = ops.prepare_lists(labels, tf.constant([[0.5, 0.1], [0.3, float("nan")]]), ragged=True)
    for first, second in zip(from_ragged, from_padded):
        if first is not None:
            np.testing.assert_array_equal(first.numpy(), second.numpy())
    assert from_ragged[3].numpy().tolist() == [[True, True], [True, False]]


def test_prepare_lists_rejects_ragged_input_without_ragged_true():
    with pytest.raises(ValueError, match=r"MyLoss: labels .* \(ragged\) is a tf.RaggedTensor; .*ragged=True"):
        ops.prepare_lists(tf.ragged.constant([[1.0], [0.0, 1.0]]), tf.ragged.constant([[1.0], [0.0, 1.0]]),
                          owner="MyLoss")


def test_prepare_lists_checks_list_lengths_in_graph_mode():
    spec = tf.RaggedTensorSpec([None, None], tf.float32, ragged_rank=1)

    @tf.function(input_signature=[spec, spec])
    def masked_scores(labels, scores):
        return ops.prepare_lists(labels, scores, ragged=True)[1]

    labels = tf.ragged.constant([[1.0, 0.0], [1.0]])
    assert masked_scores(labels, tf.ragged.constant([[0.5, 0.1], [0.3]])).numpy().tolist() == [
        [0.5, pytest.approx(0.1)], [pytest.approx(0.3), 0.0]]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels list lengths:.*\[2 1\].*scores list lengths:"):
        masked_scores(labels, tf.ragged.constant([[0.5], [0.1, 0.3]]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="ragged labels and scores differ in list lengths"):
        masked_scores(labels, tf.ragged.constant([[0.5], [0.1], [0.3]]))


@pytest.mark.parametrize("topn, expected", [(None, 1.0 / (3.0 / math.log(2.0) + 1.0 / math.log(3.0))),
                                            (1, math.log(2.0) / 3.0)])
def test_inverse_max_dcg(topn, expected):
    value = ops.inverse_max_dcg(tf.constant([[1.0, 2.0, 0.0]]), topn=topn)
    assert float(value[0, 0]) == pytest.approx(expected, rel=1e-6)


def test_inverse_max_dcg_is_zero_without_relevant_items():
    assert float(ops.inverse_max_dcg(tf.zeros([1, 3]))[0, 0]) == 0.0


def test_approx_ranks_gradient_equals_autodiff_of_the_sigmoid_sum():
    scores = tf.constant([[0.3, -1.2, 0.8, 0.1], [2.0, 2.0, -0.5, 0.0]])
    upstream = tf.constant([[1.0, -2.0, 0.5, 3.0], [0.2, 0.1, -1.0, 1.5]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(scores)
        ours = tf.reduce_sum(ops.approx_ranks(scores) * upstream)
        reference = tf.reduce_sum(
            (tf.reduce_sum(tf.sigmoid(scores[:, None, :] - scores[:, :, None]), axis=2) + 0.5) * upstream
        )
    assert float(ours) == pytest.approx(float(reference))
    np.testing.assert_allclose(tape.gradient(ours, scores), tape.gradient(reference, scores), rtol=1e-6, atol=1e-7)
