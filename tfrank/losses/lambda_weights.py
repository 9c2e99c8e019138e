"""Lambda weights: per-pair (or per-item) weights that make a ranking loss optimise a ranking metric.

A lambda weight looks at the labels and at the current ranks (items sorted by score) and weights each pair by how
much swapping the two items would change a metric such as NDCG (LambdaRank / LambdaLoss, Wang et al., 2018). Pairwise
losses call ``pair_weights``; ``SoftmaxLoss`` (with DCG/NDCG weights) and ``ListMLELoss`` (with
``ListMLELambdaWeight``) call ``individual_weights``. Numbers follow TF Ranking 0.5.5.

Inputs are dense: ``labels`` [batch, list_size] with invalid items marked by a label < 0, and 1-based ``ranks`` of
the same shape. Weights never carry gradients. The losses rank items by score with ties kept in input order
(``tfrank.ops.ranks_by_scores``); TF Ranking breaks score ties at random, so only tied scores can give different
weights.

The gain, discount and positive functions (``identity``, ``inverse``, ``pow_minus_1``, ``log2_inverse``,
``is_greater_equal_1``) are registered with Keras so that lambda weights built from them serialise by name.
"""

import abc
from typing import Any, Callable, Dict, Optional

import keras
import tensorflow as tf

from tfrank import ops
from tfrank._arguments import check_topn, deserialize_fn, serialize_fn

# The gain, discount and positive functions that lambda weights take, under their TF Ranking names (one definition
# each, in tfrank.ops; registered with Keras in tfrank._arguments).
identity = ops.identity
inverse = ops.inverse
pow_minus_1 = ops.pow_minus_1
log2_inverse = ops.log2_inverse
is_greater_equal_1 = ops.is_greater_equal_1

_PACKAGE = "tfrank"


def _clean_labels(labels: tf.Tensor):
    """(labels with invalid items set to 0, float [b, n, n] mask of pairs of valid items)."""
    valid = ops.is_label_valid(labels)
    valid_pairs = tf.cast(tf.logical_and(valid[:, :, tf.newaxis], valid[:, tf.newaxis, :]), tf.float32)
    return tf.where(valid, labels, tf.zeros_like(labels)), valid_pairs


class LambdaWeight(abc.ABC):
    """Base of the lambda weights: ``pair_weights`` for pairwise losses, ``individual_weights`` for listwise ones.

    A subclass implements ``pair_weights`` (as in TF Ranking); ``individual_weights`` defaults to the labels.
    """

    @abc.abstractmethod
    def pair_weights(self, labels: tf.Tensor, ranks: tf.Tensor) -> tf.Tensor:
        """Weights [batch, list_size, list_size] for pairs (i, j) given labels and 1-based ranks."""

    def individual_weights(self, labels: tf.Tensor, ranks: tf.Tensor) -> tf.Tensor:
        """Weights [batch, list_size] for single items; by default the labels themselves."""
        del ranks
        return labels

    def get_config(self) -> Dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "LambdaWeight":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LabelDiffLambdaWeight(LambdaWeight):
    """Weights pair (i, j) by |label_i - label_j|.

    >>> import tensorflow as tf
    >>> w = LabelDiffLambdaWeight().pair_weights(tf.constant([[2.0, 0.0]]), tf.constant([[1, 2]]))
    >>> w.numpy().tolist()
    [[[0.0, 2.0], [2.0, 0.0]]]
    """

    def pair_weights(self, labels: tf.Tensor, ranks: tf.Tensor) -> tf.Tensor:
        del ranks
        return tf.abs(ops.pairwise_difference(labels))


class _DCGLambdaWeightBase(LambdaWeight):
    """Shared part of the DCG lambda weights: |gain_i - gain_j| * rank discount of the pair * list_size."""

    def __init__(self, topn, gain_fn, rank_discount_fn, normalized):
        self.topn = check_topn(topn, type(self).__name__)
        self.gain_fn = gain_fn
        self.rank_discount_fn = rank_discount_fn
        self.normalized = bool(normalized)

    def _gains(self, clean_labels: tf.Tensor) -> tf.Tensor:
        gain = self.gain_fn(clean_labels)
        if self.normalized:
            gain *= ops.inverse_max_dcg(clean_labels, self.gain_fn, self.rank_discount_fn, topn=self.topn)
        return gain

    @abc.abstractmethod
    def _pair_rank_discount(self, ranks: tf.Tensor, topn) -> tf.Tensor:
        """The rank part of the pair weights, [batch, list_size, list_size]."""

    def pair_weights(self, labels: tf.Tensor, ranks: tf.Tensor) -> tf.Tensor:
        clean_labels, valid_pairs = _clean_labels(labels)
        gain_diff = tf.abs(ops.pairwise_difference(self._gains(clean_labels))) * valid_pairs
        list_size = tf.shape(labels)[1]
        topn = list_size if self.topn is None else self.topn
        # Scales the weights back to the magnitude of the unweighted pairwise loss (as TF Ranking does).
        return gain_diff * self._pair_rank_discount(ranks, topn) * tf.cast(list_size, tf.float32)

    def individual_weights(self, labels: tf.Tensor, ranks: tf.Tensor) -> tf.Tensor:
        clean_labels = tf.where(ops.is_label_valid(labels), labels, tf.zeros_like(labels))
        return self._gains(clean_labels) * self.rank_discount_fn(tf.cast(ranks, tf.float32))

    def get_config(self) -> Dict[str, Any]:
        return {
            "topn": self.topn,
            "gain_fn": serialize_fn(self.gain_fn),
            "rank_discount_fn": serialize_fn(self.rank_discount_fn),
        }

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "LambdaWeight":
        config = dict(config)
        for key in ("gain_fn", "rank_discount_fn"):
            config[key] = deserialize_fn(config.get(key))
        return cls(**config)


def _relative_rank_discount(rank_discount_fn, rank_diff: tf.Tensor) -> tf.Tensor:
    """|D(|r_i - r_j|) - D(|r_i - r_j| + 1)|, the LambdaLoss discount of a pair; 0 on the diagonal."""
    discount = tf.abs(rank_discount_fn(rank_diff) - rank_discount_fn(rank_diff + 1.0))
    return tf.where(rank_diff > 0.0, discount, tf.zeros_like(rank_diff))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DCGLambdaWeight(_DCGLambdaWeightBase):
    """LambdaLoss weight for DCG@topn: w_ij = |G_i - G_j| * ((1 - f) * u_ij + f * v_ij) * list_size.

    With 1-based ranks r and discount D: u_ij = |D(|r_i - r_j|) - D(|r_i - r_j| + 1)| (LambdaLoss) and
    v_ij = |D(r_i) - D(r_j)| with D = 0 beyond ``topn`` (LambdaMART); f is ``smooth_fraction``. Pairs where both
    items rank below ``topn`` get 0. With ``normalized=True`` gains are divided by the list's ideal DCG.
    Defaults: gain = label, discount = 1 / rank.

    >>> import tensorflow as tf
    >>> w = DCGLambdaWeight().pair_weights(tf.constant([[2.0, 0.0]]), tf.constant([[2, 1]]))
    >>> [round(x, 4) for x in w.numpy().ravel().tolist()]
    [0.0, 2.0, 2.0, 0.0]
    """

    def __init__(
        self,
        topn: Optional[int] = None,
        gain_fn: Optional[Callable] = None,
        rank_discount_fn: Optional[Callable] = None,
        normalized: bool = False,
        smooth_fraction: float = 0.0,
        **kwargs,
    ):
        super().__init__(topn, gain_fn or identity, rank_discount_fn or inverse, normalized)
        if not 0.0 <= smooth_fraction <= 1.0:
            raise ValueError(f"smooth_fraction={smooth_fraction}: must be in [0, 1]")
        self.smooth_fraction = float(smooth_fraction)

    def _pair_rank_discount(self, ranks: tf.Tensor, topn) -> tf.Tensor:
        ranks = tf.cast(ranks, tf.float32)
        topn = tf.cast(topn, tf.float32)
        in_topn = ranks <= topn
        either_in_topn = tf.logical_or(in_topn[:, :, tf.newaxis], in_topn[:, tf.newaxis, :])
        relative = _relative_rank_discount(self.rank_discount_fn, tf.abs(ops.pairwise_difference(ranks)))
        absolute = tf.abs(ops.pairwise_difference(tf.where(in_topn, self.rank_discount_fn(ranks), 0.0)))
        discount = (1.0 - self.smooth_fraction) * relative + self.smooth_fraction * absolute
        return tf.where(either_in_topn, discount, tf.zeros_like(discount))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"normalized": self.normalized, "smooth_fraction": self.smooth_fraction})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NDCGLambdaWeight(DCGLambdaWeight):
    """``DCGLambdaWeight`` normalised by the ideal DCG, with gain 2^label - 1 and discount 1 / log2(rank + 1).

    >>> import tensorflow as tf
    >>> w = NDCGLambdaWeight().pair_weights(tf.constant([[1.0, 0.0]]), tf.constant([[2, 1]]))
    >>> [round(x, 4) for x in w.numpy().ravel().tolist()]
    [0.0, 0.7381, 0.7381, 0.0]
    """

    def __init__(
        self,
        topn: Optional[int] = None,
        gain_fn: Optional[Callable] = None,
        rank_discount_fn: Optional[Callable] = None,
        smooth_fraction: float = 0.0,
        **kwargs,
    ):
        kwargs.pop("normalized", None)
        super().__init__(
            topn, gain_fn or pow_minus_1, rank_discount_fn or log2_inverse, normalized=True,
            smooth_fraction=smooth_fraction,
        )

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.pop("normalized")
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NDCGLambdaWeightV2(_DCGLambdaWeightBase):
    """LambdaLoss NDCG@topn weight (Wang et al., 2018, "NDCG-Loss2++" with the top-n correction).

    w_ij = |G_i - G_j| / maxDCG * |D(|r_i - r_j|) - D(|r_i - r_j| + 1)| * m_ij * list_size, where
    m_ij = 1 / (1 - D(max(r_i, r_j))) when max(r_i, r_j) > ``topn`` and 1 otherwise. Gain 2^label - 1, discount
    1 / log2(rank + 1) unless given.

    >>> import tensorflow as tf
    >>> w = NDCGLambdaWeightV2().pair_weights(tf.constant([[1.0, 0.0]]), tf.constant([[2, 1]]))
    >>> [round(x, 4) for x in w.numpy().ravel().tolist()]
    [0.0, 0.7381, 0.7381, 0.0]
    """

    def __init__(
        self,
        topn: Optional[int] = None,
        gain_fn: Optional[Callable] = None,
        rank_discount_fn: Optional[Callable] = None,
        **kwargs,
    ):
        super().__init__(topn, gain_fn or pow_minus_1, rank_discount_fn or log2_inverse, normalized=True)

    def _pair_rank_discount(self, ranks: tf.Tensor, topn) -> tf.Tensor:
        return _topn_corrected_rank_discount(self.rank_discount_fn, ranks, topn)


def _topn_corrected_rank_discount(rank_discount_fn, ranks: tf.Tensor, topn) -> tf.Tensor:
    """The LambdaLoss pair discount with the top-n correction of ``NDCGLambdaWeightV2``, [batch, n, n]."""
    ranks = tf.cast(ranks, tf.float32)
    max_rank = tf.maximum(ranks[:, :, tf.newaxis], ranks[:, tf.newaxis, :])
    beyond_topn = max_rank > tf.cast(topn, tf.float32)
    safe_max_rank = tf.where(beyond_topn, max_rank, 2.0 * tf.ones_like(max_rank))
    multiplier = tf.where(beyond_topn, 1.0 / (1.0 - rank_discount_fn(safe_max_rank)), 1.0)
    relative = _relative_rank_discount(rank_discount_fn, tf.abs(ops.pairwise_difference(ranks)))
    return relative * multiplier


@keras.saving.register_keras_serializable(package=_PACKAGE)
class YetiDCGLambdaWeight(_DCGLambdaWeightBase):
    """The lambda weight of the Yeti loss (Lyzhin et al., 2022): ``NDCGLambdaWeightV2``'s pair weight, but only
    for neighbours in the ranking (|r_i - r_j| = 1) and by default not normalised by the ideal DCG.

    w_ij = |G_i - G_j| * |D(1) - D(2)| * m_ij * list_size where |r_i - r_j| = 1, else 0; m_ij is the top-n
    correction of ``NDCGLambdaWeightV2``. Gain 2^label - 1 and discount 1 / log2(rank + 1) unless given;
    ``normalized=True`` divides gains by the ideal DCG. ``YetiLogisticLoss``'s default lambda weight.

    >>> import tensorflow as tf
    >>> w = YetiDCGLambdaWeight().pair_weights(tf.constant([[1.0, 0.0, 2.0]]), tf.constant([[2, 3, 1]]))
    >>> [round(x, 4) for x in w.numpy().ravel().tolist()]
    [0.0, 1.1072, 2.2144, 1.1072, 0.0, 0.0, 2.2144, 0.0, 0.0]
    """

    def __init__(
        self,
        topn: Optional[int] = None,
        gain_fn: Optional[Callable] = None,
        rank_discount_fn: Optional[Callable] = None,
        normalized: bool = False,
        **kwargs,
    ):
        super().__init__(topn, gain_fn or pow_minus_1, rank_discount_fn or log2_inverse, normalized)

    def _pair_rank_discount(self, ranks: tf.Tensor, topn) -> tf.Tensor:
        discount = _topn_corrected_rank_discount(self.rank_discount_fn, ranks, topn)
        neighbours = tf.equal(tf.abs(ops.pairwise_difference(ranks)), 1)
        return tf.where(neighbours, discount, tf.zeros_like(discount))

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["normalized"] = self.normalized
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PrecisionLambdaWeight(LambdaWeight):
    """LambdaRank weight for Precision@topn: 1 for a pair of one positive and one negative item exactly one of
    which ranks within ``topn`` (swapping them changes the metric), else 0. ``positive_fn`` says which labels
    are positive (default: label >= 1). ``topn=None`` constructs (as in TF Ranking) but a loss using it raises.

    >>> import tensorflow as tf
    >>> w = PrecisionLambdaWeight(topn=1).pair_weights(tf.constant([[1.0, 0.0]]), tf.constant([[2, 1]]))
    >>> w.numpy().tolist()
    [[[0.0, 1.0], [1.0, 0.0]]]
    """

    def __init__(self, topn: Optional[int] = None, positive_fn: Optional[Callable] = None, **kwargs):
        # topn=None is accepted, as in TF Ranking, so that configs without one load; a loss needs a cut-off.
        self.topn = check_topn(topn, "PrecisionLambdaWeight")
        self.positive_fn = positive_fn or is_greater_equal_1

    def pair_weights(self, labels: tf.Tensor, ranks: tf.Tensor) -> tf.Tensor:
        if self.topn is None:
            raise ValueError("PrecisionLambdaWeight(topn=None) weights pairs that cross the cut-off of Precision@topn; "
                             "give it one, e.g. PrecisionLambdaWeight(topn=5)")
        clean_labels, valid_pairs = _clean_labels(labels)
        positive = tf.cast(self.positive_fn(clean_labels), tf.float32)
        label_diff = tf.abs(ops.pairwise_difference(positive)) * valid_pairs
        in_topn = tf.less_equal(ranks, self.topn)
        swaps_topn = tf.math.logical_xor(in_topn[:, :, tf.newaxis], in_topn[:, tf.newaxis, :])
        return label_diff * tf.cast(swaps_topn, tf.float32)

    def get_config(self) -> Dict[str, Any]:
        return {"topn": self.topn, "positive_fn": serialize_fn(self.positive_fn)}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "LambdaWeight":
        config = dict(config)
        config["positive_fn"] = deserialize_fn(config.get("positive_fn"))
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ListMLELambdaWeight(LambdaWeight):
    """Position weights for ``ListMLELoss``: the term of the i-th item of the label-sorted list is multiplied by
    D(i) (default D = 1 / log2(i + 1)), so mistakes at the top cost more (Lan et al., 2014). No pair weights.

    >>> import tensorflow as tf
    >>> w = ListMLELambdaWeight(rank_discount_fn=inverse).individual_weights(
    ...     tf.constant([[1.0, 0.0]]), tf.constant([[1, 2]]))
    >>> w.numpy().tolist()
    [[1.0, 0.5]]
    """

    def __init__(self, rank_discount_fn: Optional[Callable] = None, **kwargs):
        self.rank_discount_fn = rank_discount_fn or log2_inverse

    def pair_weights(self, labels: tf.Tensor, ranks: tf.Tensor) -> tf.Tensor:
        """Not defined: position weights have no pairs (pairwise losses refuse this lambda weight up front)."""
        raise ValueError(f"{self!r} has no pair weights; use it with ListMLELoss")

    def individual_weights(self, labels: tf.Tensor, ranks: tf.Tensor) -> tf.Tensor:
        return tf.ones_like(labels) * self.rank_discount_fn(tf.cast(ranks, tf.float32))

    def get_config(self) -> Dict[str, Any]:
        return {"rank_discount_fn": serialize_fn(self.rank_discount_fn)}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "LambdaWeight":
        return cls(rank_discount_fn=deserialize_fn(config.get("rank_discount_fn")))
