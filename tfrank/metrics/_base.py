"""The base of every tfrank list metric: input checks, ragged->dense, valid-mask, top-n sorting, list weights.

A metric subclass sees one :class:`RankedLists` (dense ``[batch, list_size]`` tensors) and returns two
``[batch, 1]`` tensors: a value per list and a weight per list. The base accumulates their weighted mean
over ``update_state`` calls (it is a ``keras.metrics.Mean``).

Agreement with TF Ranking 0.5.5 (``tfr.keras.metrics``), deliberate differences marked:

- an item is valid when its label is >= 0 (dense input) or when it exists (ragged input) *and* its weight
  is > 0; invalid items get label 0 and sort after every valid item;
- a list's weight comes from its item weights and its relevance (see :func:`per_list_weights`): a list with
  no relevant item but some weight counts with the batch's mean weight, so e.g. its MRR of 0 pulls the
  mean down, exactly as in TF Ranking;
- **difference**: a batch with no valid item at all (every list is padding) is ignored: it adds nothing to
  the running mean (TF Ranking counts such lists as zeros). A metric that has seen nothing returns 0.0;
- **difference**: score ties are broken by input order (the earlier item ranks higher), not at random;
- extension: ``sample_weight`` of shape ``[batch]`` (what ``keras.Model.fit`` passes for per-list weights)
  is read as ``[batch, 1]``; with ``ragged=True`` the scores may be dense (a Keras model's padded output):
  each row is cut to its list's length.
"""

import numbers
from typing import NamedTuple

import keras
import tensorflow as tf

from tfrank import ops


class RankedLists(NamedTuple):
    """A dense batch of lists as a metric sees it; every tensor is ``[batch, list_size]``.

    ``labels`` are 0 and ``scores`` are below the list's lowest score where ``mask`` is False.
    ``weights`` are the per-item weights (per-list weights broadcast over the list; 1 when none were given).
    """

    labels: tf.Tensor
    scores: tf.Tensor
    weights: tf.Tensor
    mask: tf.Tensor


def binary_relevance(labels: tf.Tensor) -> tf.Tensor:
    """1.0 where an item is relevant (label >= 1), else 0.0: the relevance of MRR, precision, recall, MAP, hits."""
    return tf.cast(labels >= 1.0, tf.float32)


def ranks_like(sorted_values: tf.Tensor) -> tf.Tensor:
    """Ranks 1, 2, ..., n as a float ``[1, n]`` row for a ``[batch, n]`` tensor sorted by score."""
    return tf.cast(tf.range(1, tf.shape(sorted_values)[1] + 1), tf.float32)[tf.newaxis, :]


def per_list_weights(item_weights: tf.Tensor, relevance: tf.Tensor) -> tf.Tensor:
    """One weight per list, ``[batch, 1]``, from per-item weights and relevance (TF Ranking's rule).

    - a list whose item weights sum to 0 gets weight 0 (it is dropped);
    - a list with relevance gets the relevance-weighted mean of its item weights, sum(w * r) / sum(r);
    - a list without relevance (sum(r) == 0) gets the mean weight of the batch's weighted lists that have
      relevance, or 1.0 when no list in the batch has any.
    """
    total_relevance = tf.reduce_sum(relevance, axis=1, keepdims=True)
    has_weight = tf.reduce_sum(item_weights, axis=1, keepdims=True) > 0.0
    has_relevance = total_relevance > 0.0
    weights = tf.math.divide_no_nan(tf.reduce_sum(item_weights * relevance, axis=1, keepdims=True), total_relevance)
    lists_counted = tf.reduce_sum(tf.cast(has_weight & has_relevance, tf.float32))
    mean_weight = tf.where(
        lists_counted > 0.0, tf.math.divide_no_nan(tf.reduce_sum(weights), lists_counted), tf.ones_like(lists_counted)
    )
    weights_or_mean = tf.where(has_relevance, weights, mean_weight * tf.ones_like(weights))
    return tf.where(has_weight, weights_or_mean, tf.zeros_like(weights))


def _check_topn(topn) -> int | None:
    if topn is None:
        return None
    if isinstance(topn, bool) or not isinstance(topn, numbers.Integral) or topn < 1:
        raise ValueError(f"topn={topn!r}: must be a positive integer (the cut-off rank) or None for the whole list")
    return int(topn)


def _check_same_shape(labels: tf.Tensor, scores: tf.Tensor) -> None:
    if labels.shape.rank is not None and labels.shape.rank != 2:
        raise ValueError(f"labels shape {labels.shape}: must be [batch, list_size]")
    if not labels.shape.is_compatible_with(scores.shape):
        raise ValueError(
            f"labels shape {labels.shape} and scores shape {scores.shape} differ: give one score per labelled item"
        )


def _dense_weights(weights, labels: tf.Tensor) -> tf.Tensor:
    """Per-item weights ``[batch, list_size]`` from None, a scalar, ``[batch]``, ``[batch, 1]`` or per item."""
    if weights is None:
        return tf.ones_like(labels)
    weights = tf.cast(tf.convert_to_tensor(weights), tf.float32)
    if weights.shape.rank == 1:
        weights = weights[:, tf.newaxis]
    if weights.shape.rank not in (0, 2):
        raise ValueError(
            f"sample_weight shape {weights.shape} does not fit labels shape {labels.shape}: "
            "use [batch, 1] (per list) or [batch, list_size] (per item)"
        )
    if weights.shape.rank == 2:
        batch_ok = tf.compat.dimension_value(weights.shape[0]) in (None, tf.compat.dimension_value(labels.shape[0]))
        width = tf.compat.dimension_value(weights.shape[1])
        width_ok = width in (None, 1, tf.compat.dimension_value(labels.shape[1]))
        if labels.shape.rank == 2 and not (batch_ok and width_ok):
            raise ValueError(
                f"sample_weight shape {weights.shape} does not fit labels shape {labels.shape}: "
                "use [batch, 1] (per list) or [batch, list_size] (per item)"
            )
    return tf.ones_like(labels) * weights


def _check_same_lengths(other_name: str, label_lengths: tf.Tensor, other_lengths: tf.Tensor) -> None:
    """Raises ValueError (eager) or fails at run time (graph) when ragged lists differ in length."""
    if tf.executing_eagerly():
        label_lengths, other_lengths = label_lengths.numpy().tolist(), other_lengths.numpy().tolist()
        if label_lengths != other_lengths:
            raise ValueError(
                f"labels list lengths {label_lengths} and {other_name} list lengths {other_lengths} differ: "
                "give one value per labelled item"
            )
    else:
        tf.debugging.assert_equal(
            label_lengths, other_lengths, message=f"ragged labels and {other_name} have different list lengths"
        )


def _ragged_to_dense(labels, scores, weights):
    """Dense ``(labels, scores, weights, mask)`` from ragged labels and ragged or padded scores and weights."""
    labels = tf.cast(labels, tf.float32)
    lengths = labels.row_lengths()
    if not isinstance(scores, tf.RaggedTensor):
        # A Keras model returns padded scores for a ragged batch: keep each row's first `length` scores.
        scores = tf.convert_to_tensor(scores)
        if scores.shape.rank != 2:
            raise ValueError(f"labels shape {labels.shape} and scores shape {scores.shape} differ")
        scores = tf.RaggedTensor.from_tensor(scores, lengths=lengths)
    scores = tf.cast(scores, tf.float32)
    if labels.shape.rank != 2 or scores.shape.rank != 2:
        raise ValueError(f"labels shape {labels.shape} and scores shape {scores.shape}: must be [batch, (list_size)]")
    if isinstance(weights, tf.RaggedTensor):
        weights = tf.cast(weights, tf.float32)
    elif weights is not None:
        weights = tf.cast(tf.convert_to_tensor(weights), tf.float32)
        width = tf.compat.dimension_value(weights.shape[-1]) if weights.shape.rank == 2 else None
        if weights.shape.rank == 2 and width != 1:
            weights = tf.RaggedTensor.from_tensor(weights, lengths=lengths)  # padded per-item weights
    _check_same_lengths("scores", lengths, scores.row_lengths())
    if isinstance(weights, tf.RaggedTensor):
        _check_same_lengths("sample_weight", lengths, weights.row_lengths())
    labels, scores, weights, mask = ops.ragged_to_dense(labels, scores, weights)
    return labels, scores, weights, mask


class RankingMetric(keras.metrics.Mean):
    """Base of the list metrics: the weighted mean, over lists, of a per-list value.

    Subclasses implement :meth:`per_list`; they may sort with :meth:`top`. Set ``takes_topn = False`` for a
    metric that always ranks whole lists.

    Args:
      name: the metric's name (Keras derives one from the class name when None).
      topn: cut-off rank: only the ``topn`` highest-scored items of each list count. None: the whole list.
      ragged: True when ``y_true`` (and ``sample_weight`` if per item) come as ``tf.RaggedTensor``; ``y_pred`` may
        be ragged or padded. Dense ``y_true`` is still read as a padded batch.
      dtype: dtype of the result.
    """

    takes_topn = True

    def __init__(self, name: str | None = None, topn: int | None = None, ragged: bool = False, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if topn is not None and not self.takes_topn:
            raise ValueError(f"{type(self).__name__} ranks whole lists: topn={topn!r} is not supported, use None")
        self.topn = _check_topn(topn)
        self.ragged = bool(ragged)

    def per_list(self, lists: RankedLists) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns ``(values, weights)``, each ``[batch, 1]``: the metric of each list and that list's weight."""
        raise NotImplementedError(f"{type(self).__name__} must implement per_list")

    def top(self, lists: RankedLists, *features: tf.Tensor, topn: int | None = None) -> list:
        """``features`` sorted by score (descending, ties by input order, invalid items last), cut to ``topn``."""
        return ops.sort_by_scores(lists.scores, list(features), topn=topn, mask=lists.mask)

    def prepare(self, y_true, y_pred, sample_weight=None) -> tuple[RankedLists, tf.Tensor]:
        """Dense, masked lists and a ``[batch, list_size]`` bool that is True at items that are not padding."""
        if self.ragged and isinstance(y_true, tf.RaggedTensor):
            labels, scores, weights, mask = _ragged_to_dense(y_true, y_pred, sample_weight)
        else:
            if any(isinstance(t, tf.RaggedTensor) for t in (y_true, y_pred, sample_weight)) and not self.ragged:
                raise ValueError(f"{self.name}: got a tf.RaggedTensor input; construct the metric with ragged=True")
            labels = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
            scores = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
            _check_same_shape(labels, scores)
            weights, mask = sample_weight, ops.is_label_valid(labels)
        weights = _dense_weights(weights, labels)
        not_padding = mask
        mask = tf.logical_and(mask, weights > 0.0)
        labels = tf.where(mask, labels, tf.zeros_like(labels))
        lowest = tf.reduce_min(scores, axis=1, keepdims=True) - 1e-6
        scores = tf.where(mask, scores, lowest * tf.ones_like(scores))
        return RankedLists(labels, scores, weights, mask), not_padding

    def update_state(self, y_true, y_pred, sample_weight=None):
        lists, not_padding = self.prepare(y_true, y_pred, sample_weight)
        values, weights = self.per_list(lists)
        # A batch that is all padding is ignored rather than counted as zeros.
        weights = weights * tf.cast(tf.reduce_any(not_padding), weights.dtype)
        return super().update_state(values[:, 0], sample_weight=weights[:, 0])

    def get_config(self) -> dict:
        config = super().get_config()
        config["ragged"] = self.ragged
        if self.takes_topn:
            config["topn"] = self.topn
        return config
