"""Tensor helpers shared by losses and metrics: the input rule, masks, ragged<->padded, sorting, gains, discounts.

No Keras here. Conventions, shared by every module of tfrank:
- losses and metrics read their inputs through ``prepare_lists``, one rule for padding, ragged lists and weights;
- a list item is *valid* when its label is >= 0; padded items carry ``PADDING_LABEL``;
- in id inputs (``movie_id``) padded items carry ``PADDING_ID``;
- models give padded items ``PADDING_SCORE``, below any real score.
"""

from typing import Callable, Optional, Sequence, Tuple

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


def _shape_str(tensor) -> str:
    return f"{tensor.shape} (ragged)" if isinstance(tensor, tf.RaggedTensor) else str(tensor.shape)


def _assert_same_row_lengths(labels: tf.RaggedTensor, other: tf.RaggedTensor, other_name: str):
    """Fails unless ``other`` has the list lengths of ``labels``: ValueError eagerly, InvalidArgumentError in a graph.

    Padding would otherwise hide the mismatch: lists of lengths [2, 1] and [1, 2] both pad to [2, 2] and the
    scores would silently belong to the wrong items. Returns the graph-mode assertion (None when eager).
    """
    label_lengths, other_lengths = labels.row_lengths(), other.row_lengths()
    if tf.executing_eagerly():
        label_lengths, other_lengths = label_lengths.numpy().tolist(), other_lengths.numpy().tolist()
        if label_lengths != other_lengths:
            raise ValueError(
                f"labels list lengths {label_lengths} and {other_name} list lengths {other_lengths} differ: "
                f"give one {other_name} value per labelled item"
            )
        return None
    same = tf.cond(
        tf.equal(tf.size(label_lengths), tf.size(other_lengths)),
        lambda: tf.reduce_all(tf.equal(label_lengths, other_lengths)),
        lambda: tf.constant(False),
    )
    return tf.debugging.Assert(
        same,
        [f"ragged labels and {other_name} differ in list lengths: give one {other_name} value per labelled item;",
         "labels list lengths:", label_lengths, f"{other_name} list lengths:", other_lengths],
        summarize=32,
    )


def _ragged_lists_to_dense(labels: tf.RaggedTensor, scores, sample_weight):
    """Dense ``(labels, scores, sample_weight, present)`` from ragged labels and ragged or padded scores/weights."""
    labels = tf.cast(labels, tf.float32)
    if labels.shape.rank != 2:
        raise ValueError(f"labels {_shape_str(labels)}: ragged lists need rank 2, [batch, (list_size)]")
    lengths = labels.row_lengths()
    if not isinstance(scores, tf.RaggedTensor):
        # A Keras model returns padded scores for a ragged batch: each row's first `length` scores are its list.
        scores = tf.convert_to_tensor(scores)
        if scores.shape.rank != 2:
            raise ValueError(f"labels {_shape_str(labels)} and scores {scores.shape}: scores need [batch, list_size]")
        scores = tf.RaggedTensor.from_tensor(scores, lengths=lengths)
    elif scores.shape.rank != 2:
        raise ValueError(f"labels {_shape_str(labels)} and scores {_shape_str(scores)}: need [batch, (list_size)]")
    scores = tf.cast(scores, tf.float32)
    checks = [_assert_same_row_lengths(labels, scores, "scores")]
    if sample_weight is not None and not isinstance(sample_weight, tf.RaggedTensor):
        sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
        width = tf.compat.dimension_value(sample_weight.shape[1]) if sample_weight.shape.rank == 2 else None
        if sample_weight.shape.rank == 2 and width != 1:  # padded per-item weights
            sample_weight = tf.RaggedTensor.from_tensor(sample_weight, lengths=lengths)
    if isinstance(sample_weight, tf.RaggedTensor):
        sample_weight = tf.cast(sample_weight, tf.float32)
        checks.append(_assert_same_row_lengths(labels, sample_weight, "sample_weight"))
    with tf.control_dependencies([check for check in checks if check is not None]):
        return ragged_to_dense(labels, scores, sample_weight)


def _check_sample_weight(sample_weight, labels: tf.Tensor) -> Optional[tf.Tensor]:
    """Dense float32 weights of shape [], [batch, 1] or [batch, list_size]; a [batch] vector becomes [batch, 1]."""
    if sample_weight is None:
        return None
    sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
    if sample_weight.shape.rank == 1:
        sample_weight = sample_weight[:, tf.newaxis]
    rank = sample_weight.shape.rank
    fits = rank == 0 or (
        rank == 2
        and sample_weight.shape[:1].is_compatible_with(labels.shape[:1])
        and (sample_weight.shape[1] == 1 or sample_weight.shape[1:].is_compatible_with(labels.shape[1:]))
    )
    if not fits:
        raise ValueError(
            f"sample_weight {sample_weight.shape} and labels {labels.shape}: sample_weight must be a scalar, "
            "per list [batch] or [batch, 1], or per item [batch, list_size]"
        )
    return sample_weight


def prepare_lists(
    labels, scores, sample_weight=None, ragged: bool = False, owner: str = "the loss or metric"
) -> Tuple[tf.Tensor, tf.Tensor, Optional[tf.Tensor], tf.Tensor]:
    """The one input rule of losses and metrics: dense float32 ``(labels, scores, sample_weight, mask)``.

    - ``ragged=False``: labels and scores are padded ``[batch, list_size]`` tensors of the same shape; a
      ``tf.RaggedTensor`` input is an error that says to use ``ragged=True``.
    - ``ragged=True``: ragged labels ``[batch, (list_size)]`` with ragged scores, or with padded scores whose
      row i holds list i's scores first (what a Keras model returns); per-item weights may be ragged or padded
      the same way. The list lengths must agree: a ValueError eagerly, an InvalidArgumentError naming the inputs
      in a graph (``tf.function``, ``fit``). Dense labels are still read as a padded batch.
    - ``sample_weight`` (None, a scalar, per list ``[batch]`` or ``[batch, 1]``, or per item) comes back as None,
      a scalar, ``[batch, 1]`` or ``[batch, list_size]``.
    - ``mask`` is True at valid items: present in the list and label >= 0. Invalid items get ``PADDING_LABEL``
      and score 0, so whatever a padding slot held (NaN, inf, a huge value) never reaches a loss or metric and
      passes no gradient.
    """
    present = None
    inputs = {"labels": labels, "scores": scores, "sample_weight": sample_weight}
    if not ragged:
        for name, value in inputs.items():
            if isinstance(value, tf.RaggedTensor):
                raise ValueError(f"{owner}: {name} {_shape_str(value)} is a tf.RaggedTensor; construct it with "
                                 "ragged=True to take ragged lists")
    if isinstance(labels, tf.RaggedTensor):
        labels, scores, sample_weight, present = _ragged_lists_to_dense(labels, scores, sample_weight)
    else:
        for name in ("scores", "sample_weight"):
            if isinstance(inputs[name], tf.RaggedTensor):
                raise ValueError(f"{owner}: labels {labels.shape} are dense but {name} {_shape_str(inputs[name])} is a "
                                 "tf.RaggedTensor; pass ragged labels too, or pad both")
        labels = tf.cast(tf.convert_to_tensor(labels), tf.float32)
        scores = tf.cast(tf.convert_to_tensor(scores), tf.float32)
        if labels.shape.rank != 2 or not labels.shape.is_compatible_with(scores.shape):
            raise ValueError(f"labels {labels.shape} and scores {scores.shape}: need the same shape [batch, list_size]")
    sample_weight = _check_sample_weight(sample_weight, labels)
    mask = is_label_valid(labels)
    if present is not None:
        mask = tf.logical_and(mask, present)
    labels = tf.where(mask, labels, PADDING_LABEL)
    scores = tf.where(mask, scores, 0.0)
    return labels, scores, sample_weight, mask


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


def identity(label: tf.Tensor) -> tf.Tensor:
    """Gain = label."""
    return label


def pow_minus_1(label: tf.Tensor) -> tf.Tensor:
    """Gain 2^label - 1: the default gain of NDCG, as in TF Ranking."""
    return tf.pow(2.0, label) - 1.0


def inverse(rank: tf.Tensor) -> tf.Tensor:
    """Discount 1 / rank (0 where rank is 0)."""
    return tf.math.divide_no_nan(1.0, rank)


def log2_inverse(rank: tf.Tensor) -> tf.Tensor:
    """Discount 1 / log2(rank + 1) (0 where rank is 0): the default discount of the NDCG metrics and lambda weights."""
    return tf.math.divide_no_nan(tf.math.log(2.0), tf.math.log1p(rank))


def ln_inverse(rank: tf.Tensor) -> tf.Tensor:
    """Discount 1 / ln(rank + 1) (0 where rank is 0): TF Ranking's discount inside ApproxNDCG."""
    return tf.math.divide_no_nan(1.0, tf.math.log1p(rank))


def is_greater_equal_1(label: tf.Tensor) -> tf.Tensor:
    """True where an item is relevant: label >= 1 (binary relevance, as in TF Ranking)."""
    return tf.greater_equal(label, 1.0)


def inverse_max_dcg(
    labels: tf.Tensor,
    gain_fn: Callable[[tf.Tensor], tf.Tensor] = pow_minus_1,
    rank_discount_fn: Callable[[tf.Tensor], tf.Tensor] = ln_inverse,
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
