"""Diversity metrics over subtopic labels: ``AlphaDCGMetric`` and ``PrecisionIAMetric`` (TF Ranking 0.5.5's).

Labels are ``[batch, list_size, subtopics]`` (ragged: ``[batch, (list_size), subtopics]``): 1 where an item covers a
subtopic, 0 where it does not, -1 for padding. An item is valid when any of its subtopic labels is >= 0; scores
are ``[batch, list_size]`` as for the other metrics. As in TF Ranking, an item of weight 0 still takes a rank
(the other metrics skip it); score ties rank in input order and a list without valid items is ignored, as in
``tfrank/metrics/_base.py``.
"""

from collections.abc import Callable

import keras
import tensorflow as tf

from tfrank import ops
from tfrank._arguments import deserialize_fn, serialize_fn
from tfrank.metrics._base import RankedLists, RankingMetric, broadcast_sample_weight, per_list_weights, ranks_like

Tensor = tf.Tensor


def _subtopic_relevance(labels: Tensor) -> Tensor:
    """1.0 where an item covers any subtopic (a label >= 1), else 0.0: ``[batch, list_size]``."""
    return tf.cast(tf.reduce_any(labels >= 1.0, axis=-1), tf.float32)


class _DiversityMetric(RankingMetric):
    """Base of the subtopic metrics: ``RankedLists.labels`` is ``[batch, list_size, subtopics]``."""

    def prepare(self, y_true, y_pred, sample_weight=None) -> tuple[RankedLists, Tensor]:
        owner = type(self).__name__
        if isinstance(y_true, tf.RaggedTensor):
            subtopic_labels = tf.cast(y_true, tf.float32)
            item_labels = tf.reduce_max(subtopic_labels, axis=2)
            subtopic_labels = subtopic_labels.to_tensor(ops.PADDING_LABEL)
        else:
            subtopic_labels = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
            if subtopic_labels.shape.rank != 3:
                raise ValueError(f"labels {subtopic_labels.shape}: {owner} needs labels [batch, list_size, subtopics]")
            item_labels = tf.reduce_max(subtopic_labels, axis=2)
            sample_weight = broadcast_sample_weight(sample_weight, item_labels)
        if subtopic_labels.shape.rank != 3:
            raise ValueError(f"labels {subtopic_labels.shape}: {owner} needs labels [batch, (list_size), subtopics]")
        _, scores, sample_weight, valid = ops.prepare_lists(
            item_labels, y_pred, sample_weight, ragged=self.ragged, owner=owner
        )
        weights = tf.ones_like(scores) if sample_weight is None else tf.ones_like(scores) * sample_weight
        weights = tf.where(valid, weights, tf.zeros_like(weights))
        labels = tf.where(valid[:, :, tf.newaxis], subtopic_labels, tf.zeros_like(subtopic_labels))
        counted_scores = tf.where(valid, scores, scores.dtype.max * tf.ones_like(scores))
        lowest = tf.reduce_min(counted_scores, axis=1, keepdims=True) - 1e-6
        scores = tf.where(valid, scores, lowest * tf.ones_like(scores))
        return RankedLists(labels, scores, weights, valid), valid

    def list_weights(self, lists: RankedLists) -> Tensor:
        """TF Ranking's per-list weights, with an item relevant when it covers any subtopic."""
        return per_list_weights(lists.weights, _subtopic_relevance(lists.labels))


@keras.saving.register_keras_serializable(package="tfrank")
class PrecisionIAMetric(_DiversityMetric):
    """Intent-aware precision@k (Clarke et al., 2009): ``sum_t sum_{rank(i) <= k} rel_it / (k' * subtopics)``.

    ``rel_it`` is 1 when item i covers subtopic t (label >= 1); ``subtopics`` counts the subtopics covered by
    any item of the list; ``k' = min(k, number of valid items)``.

    >>> from tfrank.metrics import PrecisionIAMetric
    >>> labels = [[[1., 0.], [0., 0.], [1., 1.]]]
    >>> float(PrecisionIAMetric(topn=2)(labels, [[3., 2., 1.]]))  # 1 subtopic hit in the top 2, of 2 * 2
    0.25
    """

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        sorted_labels = self.top(lists, lists.labels, topn=self.topn)[0]
        hits = tf.reduce_sum(tf.cast(sorted_labels >= 1.0, tf.float32), axis=[1, 2])[:, tf.newaxis]
        covered = tf.reduce_any(lists.labels >= 1.0, axis=1)
        subtopics = tf.reduce_sum(tf.cast(covered, tf.float32), axis=1, keepdims=True)
        valid_count = tf.reduce_sum(tf.cast(lists.mask, tf.float32), axis=1, keepdims=True)
        cutoff = valid_count if self.topn is None else tf.minimum(float(self.topn), valid_count)
        return tf.math.divide_no_nan(hits, cutoff * subtopics), self.list_weights(lists)


@keras.saving.register_keras_serializable(package="tfrank")
class AlphaDCGMetric(_DiversityMetric):
    """alpha-DCG@k (Clarke et al., 2008): ``sum_{rank(i) <= k} w_i discount(rank(i)) sum_t y_it (1 - alpha)^c_it``.

    ``c_it`` is the number of items ranked above i that cover subtopic t, so a subtopic already covered gains less.
    Each list's value is divided by its weight (TF Ranking's per-list weight) and the mean is weighted by it.
    Default discount ``1 / log2(rank + 1)``. ``seed`` is kept for TF Ranking's config and unused: ties rank in
    input order.

    >>> from tfrank.metrics import AlphaDCGMetric
    >>> labels = [[[1., 0.], [1., 1.]]]
    >>> round(float(AlphaDCGMetric()(labels, [[2., 1.]])), 4)  # 1 + (0.5 + 1) / log2(3)
    1.9464
    """

    def __init__(
        self,
        name: str | None = "alpha_dcg_metric",
        topn: int | None = None,
        alpha: float = 0.5,
        rank_discount_fn: Callable[[Tensor], Tensor] | None = None,
        seed: int | None = None,
        dtype=None,
        ragged: bool = False,
        **kwargs,
    ):
        super().__init__(name=name, topn=topn, ragged=ragged, dtype=dtype)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha!r}: AlphaDCGMetric needs alpha in [0, 1]")
        self.alpha = float(alpha)
        self.rank_discount_fn = deserialize_fn(rank_discount_fn, ops.log2_inverse)
        self.seed = seed

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        sorted_labels, sorted_weights = self.top(lists, lists.labels, lists.weights, topn=self.topn)
        covered_above = tf.cumsum(sorted_labels, axis=1, exclusive=True)
        gains = tf.reduce_sum(sorted_labels * tf.pow(1.0 - self.alpha, covered_above), axis=2)
        alpha_dcg = tf.reduce_sum(sorted_weights * gains * self.rank_discount_fn(ranks_like(gains)), axis=1,
                                  keepdims=True)
        list_weights = self.list_weights(lists)
        return tf.math.divide_no_nan(alpha_dcg, list_weights), list_weights

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "alpha": self.alpha,
            "rank_discount_fn": serialize_fn(self.rank_discount_fn, ops.log2_inverse),
            "seed": self.seed,
        })
        return config
