"""The base of every tfrank list metric: input checks, ragged->dense, valid-mask, top-n sorting, list weights.

A metric subclass sees one :class:`RankedLists` (dense ``[batch, list_size]`` tensors) and returns two
``[batch, 1]`` tensors: a value per list and a weight per list. The base accumulates their weighted mean
over ``update_state`` calls (it is a ``keras.metrics.Mean``).

Agreement with TF Ranking 0.5.5 (``tfr.keras.metrics``), deliberate differences marked:

- inputs follow ``tfrank.ops.prepare_lists``, the rule the losses share: an item is valid when its label is
  >= 0 and it is present (ragged input); ``ragged=True`` takes ragged labels with ragged or padded (a Keras
  model's output) scores, and list lengths that disagree are an error in eager and graph mode alike;
- an item counts when it is valid *and* its weight is > 0; other items get label 0 and sort after every
  counted item, and their scores (NaN and inf included) change nothing;
- a list's weight comes from its item weights and its relevance (see :func:`per_list_weights`): a list with
  no relevant item but some weight counts with the batch's mean weight, so e.g. its MRR of 0 pulls the
  mean down, exactly as in TF Ranking;
- **difference**: a list with no valid item (all padding, or empty) is ignored, weight 0, whether it is alone
  in its batch or beside real lists, so a metric's value never depends on which lists share its batch (TF
  Ranking counts such lists as zeros when other lists have items). A metric that has seen nothing returns 0.0;
- **difference**: a NaN or infinite score on a counted item makes that list's value NaN, and so the result NaN
  until ``reset_state`` (TF Ranking ranks such an item first or last and returns a finite value). Nothing is
  raised, in eager or graph mode: a diverged model shows up as a NaN metric;
- **difference**: score ties are broken by input order (the earlier item ranks higher), not at random;
- ``sample_weight`` may also have the shapes TF Ranking broadcasts: ``[list_size]`` or ``[1, list_size]`` (the
  same item weights for every list) and ``[1, 1]`` (see :func:`broadcast_sample_weight`);
- extension: ``sample_weight`` of shape ``[batch]`` (what ``keras.Model.fit`` passes for per-list weights)
  is read as ``[batch, 1]``; when batch == list_size such a vector is ambiguous and rejected.
"""

import abc
from typing import NamedTuple

import keras
import tensorflow as tf

from tfrank import ops
from tfrank._arguments import check_topn


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
    return tf.cast(ops.is_greater_equal_1(labels), tf.float32)


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


def broadcast_sample_weight(sample_weight, labels):
    """``sample_weight`` for dense ``labels`` [batch, list_size], with the shapes TF Ranking broadcasts made explicit.

    A ``[list_size]`` vector weighs the items of every list; ``[1, list_size]`` and ``[1, 1]`` are repeated over the
    batch. A ``[batch]`` vector stays per list (Keras' ``fit`` passes that). When batch == list_size a vector could
    be either: a ValueError asks for ``[batch, 1]`` or ``[1, list_size]``. Other shapes pass unchanged.
    """
    if sample_weight is None or isinstance(sample_weight, tf.RaggedTensor) or isinstance(labels, tf.RaggedTensor):
        return sample_weight
    sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank != 2:
        return sample_weight
    batch_size, list_size = labels.shape[0], labels.shape[1]
    if sample_weight.shape.rank == 1 and sample_weight.shape[0] is not None and sample_weight.shape[0] == list_size:
        if batch_size == list_size:
            raise ValueError(
                f"sample_weight {sample_weight.shape} with labels {labels.shape}: per list or per item? reshape it to "
                "[batch, 1] (one weight per list) or [1, list_size] (the same item weights for every list)"
            )
        sample_weight = sample_weight[tf.newaxis, :]
    if sample_weight.shape.rank == 2 and sample_weight.shape[0] == 1 and batch_size != 1:
        sample_weight = tf.ones_like(labels[:, :1], dtype=tf.float32) * sample_weight
    return sample_weight


class RankingMetric(keras.metrics.Mean, metaclass=abc.ABCMeta):
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
        self.topn = check_topn(topn, type(self).__name__)
        self.ragged = bool(ragged)

    @abc.abstractmethod
    def per_list(self, lists: RankedLists) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns ``(values, weights)``, each ``[batch, 1]``: the metric of each list and that list's weight."""

    def top(self, lists: RankedLists, *features: tf.Tensor, topn: int | None = None) -> list:
        """``features`` sorted by score (descending, ties by input order, invalid items last), cut to ``topn``."""
        return ops.sort_by_scores(lists.scores, list(features), topn=topn, mask=lists.mask)

    def prepare(self, y_true, y_pred, sample_weight=None) -> tuple[RankedLists, tf.Tensor]:
        """Dense, masked lists and a ``[batch, list_size]`` bool that is True at valid items (label >= 0, present).

        Inputs follow ``tfrank.ops.prepare_lists``, the rule the losses share.
        """
        sample_weight = broadcast_sample_weight(sample_weight, y_true)
        labels, scores, sample_weight, valid = ops.prepare_lists(
            y_true, y_pred, sample_weight, ragged=self.ragged, owner=type(self).__name__
        )
        weights = tf.ones_like(labels) if sample_weight is None else tf.ones_like(labels) * sample_weight
        # An invalid item weighs nothing, so a list without valid items weighs nothing either.
        weights = tf.where(valid, weights, tf.zeros_like(weights))
        mask = tf.logical_and(valid, weights > 0.0)
        labels = tf.where(mask, labels, tf.zeros_like(labels))
        counted_scores = tf.where(mask, scores, scores.dtype.max * tf.ones_like(scores))
        lowest = tf.reduce_min(counted_scores, axis=1, keepdims=True) - 1e-6
        scores = tf.where(mask, scores, lowest * tf.ones_like(scores))
        return RankedLists(labels, scores, weights, mask), valid

    def update_state(self, y_true, y_pred, sample_weight=None):
        lists, valid = self.prepare(y_true, y_pred, sample_weight)
        values, weights = self.per_list(lists)
        has_valid_item = tf.reduce_any(valid, axis=1, keepdims=True)
        weights = tf.where(has_valid_item, weights, tf.zeros_like(weights))
        # A NaN or infinite score would otherwise just rank first or last and give a finite, wrong value. Weight 1
        # keeps the NaN visible even where the list's own weight is 0.
        not_finite = tf.reduce_any(tf.logical_and(lists.mask, ~tf.math.is_finite(lists.scores)), axis=1, keepdims=True)
        values = tf.where(not_finite, tf.fill(tf.shape(values), float("nan")), values)
        weights = tf.where(not_finite, tf.ones_like(weights), weights)
        return super().update_state(values[:, 0], sample_weight=weights[:, 0])

    def get_config(self) -> dict:
        config = super().get_config()
        config["ragged"] = self.ragged
        if self.takes_topn:
            config["topn"] = self.topn
        return config
