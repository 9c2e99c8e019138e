"""Tensor helpers shared by losses and metrics: masks, ragged<->padded, sorting, gains and discounts.

No Keras here. Conventions, shared by every module of tfrank:
- a list item is *valid* when its label is >= 0; padded items carry ``PADDING_LABEL``;
- in id inputs (``movie_id``) padded items carry ``PADDING_ID``;
- models give padded items ``PADDING_SCORE``, below any real score.
"""

from typing import Callable, Optional, Sequence

import tensorflow as tf

PADDING_LABEL = -1.0
PADDING_ID = -1
PADDING_SCORE = -1e9
# What padded positions of a ragged batch get when it is made dense (TF Ranking's choices).
_PADDING_PREDICTION = -1e6
_PADDING_WEIGHT = 0.0


def is_label_valid(labels: tf.Tensor) -> tf.Tensor:
    """True where a list item is real: its label is >= 0."""
    return tf.greater_equal(labels, 0.0)


def ragged_to_dense(labels: tf.RaggedTensor, scores: Optional[tf.RaggedTensor], weights=None):
    """Pads a ragged batch of lists; returns dense ``(labels, scores, weights, mask)``.

    Labels are padded with ``PADDING_LABEL`` and scores with a low finite value, so padded items are invalid.
    Ragged per-item ``weights`` are padded with 0; dense per-list weights ``[batch, 1]`` pass through.
    """
    mask = tf.cast(tf.ones_like(labels).to_tensor(0.0), tf.bool)
    labels = labels.to_tensor(PADDING_LABEL)
    if scores is not None:
        scores = scores.to_tensor(_PADDING_PREDICTION)
    if isinstance(weights, tf.RaggedTensor):
        weights = weights.to_tensor(_PADDING_WEIGHT)
    return labels, scores, weights, mask


def _shuffle_indices(shape, mask=None, shuffle_ties: bool = True, seed: Optional[int] = None) -> tf.Tensor:
    """Indices that (optionally randomly) permute the last axis, placing ``mask == False`` entries last."""
    if shuffle_ties:
        values = tf.random.uniform(shape, seed=seed)
    else:
        values = tf.zeros(shape, dtype=tf.float32)
    if mask is not None:
        # values lie in [0, 1): adding 2 moves masked-out entries behind every valid one.
        values = tf.where(mask, values, values + 2.0)
    return tf.argsort(values, stable=True)


def sort_by_scores(
    scores: tf.Tensor,
    features: Sequence[tf.Tensor],
    topn: Optional[int] = None,
    shuffle_ties: bool = False,
    seed: Optional[int] = None,
    mask: Optional[tf.Tensor] = None,
) -> list:
    """Sorts each tensor in ``features`` ([batch, list_size, ...]) by ``scores`` descending, keeping ``topn``.

    Items where ``mask`` is False go last. Ties keep the input order unless ``shuffle_ties`` (TF Ranking
    shuffles ties at random by default; tfrank is deterministic by default).
    """
    scores = tf.cast(scores, tf.float32)
    list_size = tf.shape(scores)[1]
    topn = list_size if topn is None else tf.minimum(topn, list_size)
    if mask is not None:
        scores = tf.where(mask, scores, tf.reduce_min(scores))
    shuffle = None
    if shuffle_ties or mask is not None:
        shuffle = _shuffle_indices(tf.shape(scores), mask, shuffle_ties=shuffle_ties, seed=seed)
        scores = tf.gather(scores, shuffle, batch_dims=1, axis=1)
    _, indices = tf.math.top_k(scores, topn, sorted=True)
    if shuffle is not None:
        indices = tf.gather(shuffle, indices, batch_dims=1, axis=1)
    return [tf.gather(feature, indices, batch_dims=1, axis=1) for feature in features]


def sorted_ranks(scores: tf.Tensor, shuffle_ties: bool = False, seed: Optional[int] = None) -> tf.Tensor:
    """1-based rank of each item when its list is sorted by ``scores`` descending: [[1., 3.5, 2.1]] -> [[3, 1, 2]]."""
    batch_size, list_size = tf.unstack(tf.shape(scores))
    positions = tf.tile(tf.range(list_size)[tf.newaxis, :], [batch_size, 1])
    sorted_positions = sort_by_scores(scores, [positions], shuffle_ties=shuffle_ties, seed=seed)[0]
    return tf.argsort(sorted_positions) + 1


def default_gain(labels: tf.Tensor) -> tf.Tensor:
    """Exponential gain 2^label - 1, as in TF Ranking."""
    return tf.pow(2.0, labels) - 1.0


def log2_discount(rank: tf.Tensor) -> tf.Tensor:
    """1 / log2(rank + 1): the NDCG metrics' rank discount."""
    return tf.math.log(2.0) / tf.math.log1p(rank)


def ln_discount(rank: tf.Tensor) -> tf.Tensor:
    """1 / ln(rank + 1): TF Ranking's default discount inside losses and lambda weights."""
    return 1.0 / tf.math.log1p(rank)


def inverse_max_dcg(
    labels: tf.Tensor,
    gain_fn: Callable[[tf.Tensor], tf.Tensor] = default_gain,
    rank_discount_fn: Callable[[tf.Tensor], tf.Tensor] = ln_discount,
    topn: Optional[int] = None,
) -> tf.Tensor:
    """1 / (the DCG of the ideal ordering of ``labels``), shape [batch, 1]; 0 where that DCG is 0."""
    ideal_labels = sort_by_scores(labels, [labels], topn=topn)[0]
    rank = tf.cast(tf.range(tf.shape(ideal_labels)[1]) + 1, tf.float32)
    max_dcg = tf.reduce_sum(gain_fn(ideal_labels) * rank_discount_fn(rank), axis=1, keepdims=True)
    safe_dcg = tf.where(max_dcg > 0.0, max_dcg, tf.ones_like(max_dcg))
    return tf.where(max_dcg > 0.0, 1.0 / safe_dcg, tf.zeros_like(max_dcg))


def ranks_by_scores(scores: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """1-based ranks of ``scores`` sorted descending, valid items (``mask``) first; ties keep the input order.

    TF Ranking breaks score ties at random when it ranks items for lambda weights; tfrank is deterministic.
    """
    scores = tf.where(mask, tf.cast(scores, tf.float32), -float("inf"))
    order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
    return tf.argsort(order, axis=1, stable=True) + 1


def approx_ranks(scores: tf.Tensor) -> tf.Tensor:
    """Smooth ranks: rank_i = 1/2 + sum_j sigmoid(s_j - s_i), i.e. 1 + sum_{j != i} sigmoid(s_j - s_i).

    The sigmoid replaces the indicator ``s_j > s_i`` of the exact rank (Qin et al., 2010); divide ``scores`` by a
    temperature first to sharpen or soften it. Shape [batch, list_size] -> [batch, list_size].

    The gradient is written by hand from the slopes p(1 - p) of the sigmoids, kept from the forward pass, so that
    the backward pass is one batched matrix-vector product instead of several list_size^2 temporaries.
    """

    @tf.custom_gradient
    def smooth_ranks(scores):
        above = tf.sigmoid(scores[:, tf.newaxis, :] - scores[:, :, tf.newaxis])  # (i, j): sigmoid(s_j - s_i)
        slopes = above * (1.0 - above)

        def grad(upstream):
            # d rank_i / d s_j = slopes_ij and d rank_i / d s_i = -sum_j slopes_ij (the j = i terms cancel).
            return tf.linalg.matvec(slopes, upstream, transpose_a=True) - upstream * tf.reduce_sum(slopes, axis=2)

        return tf.reduce_sum(above, axis=2) + 0.5, grad

    return smooth_ranks(tf.convert_to_tensor(scores))


def pairwise_difference(values: tf.Tensor) -> tf.Tensor:
    """[batch, list_size] -> [batch, list_size, list_size] with entry (i, j) = values_i - values_j."""
    return values[:, :, tf.newaxis] - values[:, tf.newaxis, :]


def preferred_pairs(labels: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Boolean [batch, list_size, list_size]: True where items i and j are both valid and labels_i > labels_j.

    Built with one list_size^2 comparison: invalid items get -inf as the first item of a pair and +inf as the
    second, so every pair that involves one compares False.
    """
    labels = tf.cast(labels, tf.float32)
    as_first = tf.where(mask, labels, -float("inf"))
    as_second = tf.where(mask, labels, float("inf"))
    return tf.greater(as_first[:, :, tf.newaxis], as_second[:, tf.newaxis, :])
