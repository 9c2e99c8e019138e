"""The list metrics: one small class per metric over :class:`tfrank.metrics._base.RankingMetric`.

Every metric reads ``y_true`` labels and ``y_pred`` scores of shape ``[batch, list_size]`` (or ragged
``[batch, (list_size)]`` with ``ragged=True``), an optional ``sample_weight`` per list ``[batch, 1]`` or per item,
and reports the weighted mean over lists of a per-list value. The numbers are TF Ranking 0.5.5's Keras metrics',
except that score ties rank in input order (TF Ranking shuffles them), a list without valid items is ignored and
a NaN or infinite score on a counted item makes the result NaN (see ``tfrank/metrics/_base.py``).

Notation: ``rank(i)`` is item i's 1-based position when its list is sorted by score, descending;
``rel_i = 1 if label_i >= 1 else 0`` is binary relevance; ``k`` is ``topn`` (the whole list when None).
"""

from collections.abc import Callable

import keras
import tensorflow as tf

from tfrank import ops
from tfrank._arguments import deserialize_fn, serialize_fn
from tfrank.metrics._base import RankedLists, RankingMetric, binary_relevance, per_list_weights, ranks_like

Tensor = tf.Tensor


def _binary_list_weights(lists: RankedLists) -> Tensor:
    return per_list_weights(lists.weights, binary_relevance(lists.labels))


@keras.saving.register_keras_serializable(package="tfrank")
class MRRMetric(RankingMetric):
    """Mean reciprocal rank: ``MRR = max_i rel_i / rank(i)`` over the top ``k`` items (0 when none is relevant).

    >>> from tfrank.metrics import MRRMetric
    >>> round(float(MRRMetric()([[0., 2., 1.]], [[3., 1., 2.]])), 4)
    0.5
    """

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        relevance = binary_relevance(self.top(lists, lists.labels, topn=self.topn)[0])
        reciprocal_rank = tf.reduce_max(relevance / ranks_like(relevance), axis=1, keepdims=True)
        return reciprocal_rank, _binary_list_weights(lists)


@keras.saving.register_keras_serializable(package="tfrank")
class HitsMetric(RankingMetric):
    """Hits@k: 1 if any of the top ``k`` items is relevant, else 0. Set ``topn``: without it, any relevant list hits.

    >>> from tfrank.metrics import HitsMetric
    >>> labels, scores = [[0., 2., 1.]], [[3., 1., 2.]]
    >>> float(HitsMetric(topn=1)(labels, scores)), float(HitsMetric(topn=2)(labels, scores))
    (0.0, 1.0)
    """

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        relevance = binary_relevance(self.top(lists, lists.labels, topn=self.topn)[0])
        return tf.reduce_max(relevance, axis=1, keepdims=True), _binary_list_weights(lists)


@keras.saving.register_keras_serializable(package="tfrank")
class PrecisionMetric(RankingMetric):
    """Precision@k: ``sum_{rank(i) <= k} rel_i / min(k, number of valid items)``.

    >>> from tfrank.metrics import PrecisionMetric
    >>> float(PrecisionMetric(topn=2)([[0., 2., 1.]], [[3., 1., 2.]]))
    0.5
    """

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        relevance = binary_relevance(self.top(lists, lists.labels, topn=self.topn)[0])
        valid_count = tf.reduce_sum(tf.cast(lists.mask, tf.float32), axis=1, keepdims=True)
        cutoff = valid_count if self.topn is None else tf.minimum(float(self.topn), valid_count)
        precision = tf.math.divide_no_nan(tf.reduce_sum(relevance, axis=1, keepdims=True), cutoff)
        return precision, _binary_list_weights(lists)


@keras.saving.register_keras_serializable(package="tfrank")
class RecallMetric(RankingMetric):
    """Recall@k: ``sum_{rank(i) <= k} rel_i / sum_i rel_i`` (0 when the list has no relevant item).

    >>> from tfrank.metrics import RecallMetric
    >>> float(RecallMetric(topn=2)([[0., 2., 1.]], [[3., 1., 2.]]))
    0.5
    """

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        top_relevance = binary_relevance(self.top(lists, lists.labels, topn=self.topn)[0])
        recall = tf.math.divide_no_nan(
            tf.reduce_sum(top_relevance, axis=1, keepdims=True),
            tf.reduce_sum(binary_relevance(lists.labels), axis=1, keepdims=True),
        )
        return recall, _binary_list_weights(lists)


@keras.saving.register_keras_serializable(package="tfrank")
class MeanAveragePrecisionMetric(RankingMetric):
    """Average precision: ``AP = sum_{rank(i) <= k} w_i rel_i P@rank(i) / sum_i w_i rel_i``, P@r = precision at r.

    ``w_i`` are per-item weights (1 without ``sample_weight``); the mean over lists is MAP.

    >>> from tfrank.metrics import MeanAveragePrecisionMetric
    >>> round(float(MeanAveragePrecisionMetric()([[0., 2., 1.]], [[3., 1., 2.]])), 4)  # (1/2 + 2/3) / 2
    0.5833
    """

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        relevance = binary_relevance(lists.labels)
        sorted_relevance, sorted_weights = self.top(lists, relevance, lists.weights, topn=self.topn)
        precision_at_rank = tf.cumsum(sorted_relevance, axis=1) / ranks_like(sorted_relevance)
        average_precision = tf.math.divide_no_nan(
            tf.reduce_sum(precision_at_rank * sorted_weights * sorted_relevance, axis=1, keepdims=True),
            tf.reduce_sum(lists.weights * relevance, axis=1, keepdims=True),
        )
        return average_precision, per_list_weights(lists.weights, relevance)


@keras.saving.register_keras_serializable(package="tfrank")
class ARPMetric(RankingMetric):
    """Average relevance position: ``ARP = sum_i w_i y_i rank(i) / sum_i w_i y_i``, over whole lists (no ``topn``).

    The list's weight is ``sum_i w_i y_i``, so lists without relevance are dropped. Lower is better.

    >>> from tfrank.metrics import ARPMetric
    >>> round(float(ARPMetric()([[0., 2., 1.]], [[3., 1., 2.]])), 4)  # (2 * 1 + 3 * 2) / 3
    2.6667
    """

    takes_topn = False

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        sorted_labels, sorted_weights = self.top(lists, lists.labels, lists.weights)
        weighted_labels = sorted_labels * sorted_weights
        list_weights = tf.reduce_sum(weighted_labels, axis=1, keepdims=True)
        position_sum = tf.reduce_sum(weighted_labels * ranks_like(weighted_labels), axis=1, keepdims=True)
        return tf.math.divide_no_nan(position_sum, list_weights), list_weights


@keras.saving.register_keras_serializable(package="tfrank")
class OPAMetric(RankingMetric):
    """Ordered pair accuracy: ``sum_{y_i > y_j} w_i [s_i > s_j] / sum_{y_i > y_j} w_i`` over valid pairs.

    Pairs with equal labels never count; pairs with equal scores count as wrong. The list's weight is the
    denominator, so lists without a pair of different labels are dropped. Whole lists only (no ``topn``).

    >>> from tfrank.metrics import OPAMetric
    >>> round(float(OPAMetric()([[0., 1., 2.]], [[1., 3., 2.]])), 4)  # 2 of the 3 ordered pairs are right
    0.6667
    """

    takes_topn = False

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        label_above = tf.cast(lists.labels[:, :, tf.newaxis] > lists.labels[:, tf.newaxis, :], tf.float32)
        score_above = tf.cast(lists.scores[:, :, tf.newaxis] > lists.scores[:, tf.newaxis, :], tf.float32)
        valid_pair = tf.cast(lists.mask[:, :, tf.newaxis] & lists.mask[:, tf.newaxis, :], tf.float32)
        pair_weights = label_above * valid_pair * lists.weights[:, :, tf.newaxis]
        list_weights = tf.reduce_sum(pair_weights, axis=[1, 2])[:, tf.newaxis]
        correct = tf.reduce_sum(pair_weights * score_above, axis=[1, 2])[:, tf.newaxis]
        return tf.math.divide_no_nan(correct, list_weights), list_weights


class _GainMetric(RankingMetric):
    """A metric over gains ``gain_fn(label)`` and rank discounts ``rank_discount_fn(rank)`` (DCG, NDCG).

    Defaults (None): ``gain = 2^label - 1`` and ``discount = 1 / log2(rank + 1)``. A custom callable must be a
    registered Keras serializable (``@keras.saving.register_keras_serializable()``) for ``get_config`` and
    ``.keras`` saving to round-trip.
    """

    def __init__(
        self,
        name: str | None = None,
        topn: int | None = None,
        gain_fn: Callable[[Tensor], Tensor] | None = None,
        rank_discount_fn: Callable[[Tensor], Tensor] | None = None,
        ragged: bool = False,
        dtype=None,
    ):
        super().__init__(name=name, topn=topn, ragged=ragged, dtype=dtype)
        self.gain_fn = deserialize_fn(gain_fn, ops.pow_minus_1)
        self.rank_discount_fn = deserialize_fn(rank_discount_fn, ops.log2_inverse)

    def dcg(self, labels: Tensor, weights: Tensor) -> Tensor:
        """``[batch, 1]`` DCG of lists already in rank order: ``sum_r w_r gain(y_r) discount(r)``."""
        gains = self.gain_fn(labels)
        return tf.reduce_sum(weights * gains * self.rank_discount_fn(ranks_like(labels)), axis=1, keepdims=True)

    def list_weights(self, lists: RankedLists) -> Tensor:
        return per_list_weights(lists.weights, self.gain_fn(lists.labels))

    def get_config(self) -> dict:
        config = super().get_config()
        config["gain_fn"] = serialize_fn(self.gain_fn, ops.pow_minus_1)
        config["rank_discount_fn"] = serialize_fn(self.rank_discount_fn, ops.log2_inverse)
        return config


@keras.saving.register_keras_serializable(package="tfrank")
class DCGMetric(_GainMetric):
    """Discounted cumulative gain over the top ``k``: ``DCG = sum_{rank(i) <= k} w_i gain(y_i) discount(rank(i))``.

    Each list's DCG is divided by its weight (see ``per_list_weights``) and the mean is weighted by that
    weight, so the result is ``sum DCG / sum weights``, as in TF Ranking. Defaults: ``gain = 2^y - 1``,
    ``discount(r) = 1 / log2(r + 1)``; custom callables must be registered Keras serializables.

    >>> from tfrank.metrics import DCGMetric
    >>> round(float(DCGMetric()([[0., 2., 1.]], [[3., 1., 2.]])), 4)  # 0 / 1 + 1 / log2(3) + 3 / 2
    2.1309
    """

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        sorted_labels, sorted_weights = self.top(lists, lists.labels, lists.weights, topn=self.topn)
        list_weights = self.list_weights(lists)
        return tf.math.divide_no_nan(self.dcg(sorted_labels, sorted_weights), list_weights), list_weights


@keras.saving.register_keras_serializable(package="tfrank")
class NDCGMetric(_GainMetric):
    """Normalised DCG: ``NDCG = DCG@k / DCG@k of the ideal order`` (items sorted by ``w_i gain(y_i)``), 0 if that is 0.

    Defaults: ``gain = 2^y - 1``, ``discount(r) = 1 / log2(r + 1)``; custom callables must be registered
    Keras serializables.

    >>> from tfrank.metrics import NDCGMetric
    >>> round(float(NDCGMetric()([[0., 2., 1.]], [[3., 1., 2.]])), 4)  # (1 / log2(3) + 3 / 2) / (3 + 1 / log2(3))
    0.5869
    """

    def per_list(self, lists: RankedLists) -> tuple[Tensor, Tensor]:
        sorted_labels, sorted_weights = self.top(lists, lists.labels, lists.weights, topn=self.topn)
        weighted_gains = lists.weights * self.gain_fn(lists.labels)
        ideal_labels, ideal_weights = ops.sort_by_scores(
            weighted_gains, [lists.labels, lists.weights], topn=self.topn, mask=lists.mask
        )
        ndcg = tf.math.divide_no_nan(self.dcg(sorted_labels, sorted_weights), self.dcg(ideal_labels, ideal_weights))
        return ndcg, self.list_weights(lists)
