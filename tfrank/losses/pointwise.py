"""Pointwise losses: each valid item is scored on its own against its label; padded items cost nothing.

``OrdinalLoss`` and ``ClickEMLoss`` take a vector of scores per item, ``[batch, list_size, k]`` (ragged:
``[batch, (list_size), k]``).

The batch loss is sum_{lists, valid items} w_i * loss(y_i, s_i) / (batch * list_size), TF Ranking 0.5.5's value.
"""

import abc
from typing import Optional

import keras
import tensorflow as tf

from tfrank import _arguments
from tfrank.losses._base import ItemVectorScores, RankingLoss, item_weights


class PointwiseLoss(RankingLoss):
    """Base of the pointwise losses: subclasses implement ``pointwise_loss(labels, scores)`` elementwise."""

    def __init__(self, reduction: Optional[str] = "sum_over_batch_size", name: Optional[str] = None,
                 ragged: bool = False, **kwargs):
        super().__init__(reduction=reduction, name=name, ragged=ragged, **kwargs)

    @abc.abstractmethod
    def pointwise_loss(self, labels: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
        """The loss of each item, elementwise; padded items are masked afterwards."""

    def compute(self, labels, scores, mask, sample_weight):
        labels = tf.where(mask, labels, 0.0)
        scores = tf.where(mask, scores, 0.0)
        return self.pointwise_loss(labels, scores), item_weights(sample_weight, mask)

    @classmethod
    def _config_args(cls):
        return ()


@keras.saving.register_keras_serializable(package="tfrank")
class SigmoidCrossEntropyLoss(PointwiseLoss):
    r"""Sigmoid cross-entropy of each item: -(y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))).

    Meant for binary labels in [0, 1].

    >>> import tensorflow as tf
    >>> loss = SigmoidCrossEntropyLoss()
    >>> round(float(loss([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    0.80429
    >>> loss = SigmoidCrossEntropyLoss(ragged=True)
    >>> round(float(loss(tf.ragged.constant([[1.0, 0.0], [0.0, 1.0, 0.0]]),
    ...                  tf.ragged.constant([[0.6, 0.8], [0.5, 0.8, 0.4]]))), 5)
    0.64446
    """

    def pointwise_loss(self, labels, scores):
        return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=scores)


@keras.saving.register_keras_serializable(package="tfrank")
class MeanSquaredLoss(PointwiseLoss):
    r"""Squared error of each valid item, (y - s)^2; padded items (label < 0) are ignored.

    Also registered as ``"mse"``: unlike ``keras.losses.MeanSquaredError`` it masks padding, but it still divides
    by batch * list_size (padded slots included), as TF Ranking does.

    >>> round(float(MeanSquaredLoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    0.4
    >>> round(float(MeanSquaredLoss()([[1.0, 0.0, -1.0]], [[0.6, 0.8, 5.0]])), 5)
    0.26667
    """

    def pointwise_loss(self, labels, scores):
        return tf.math.squared_difference(labels, scores)


class _ItemVectorLoss(ItemVectorScores, RankingLoss):
    """Base of the pointwise losses whose scores are a vector per item, ``[batch, list_size, depth]``."""

    @classmethod
    def _config_args(cls):
        return ()


@keras.saving.register_keras_serializable(package="tfrank")
class OrdinalLoss(_ItemVectorLoss):
    r"""Ordinal loss: one sigmoid cross-entropy per ordinal level, scores ``[batch, list_size, ordinal_size]``.

    loss = -sum_i sum_{k=1..m} [o_ik log sigmoid(s_ik) + (1 - o_ik) log(1 - sigmoid(s_ik))] with o_ik = 1 if
    y_i >= k else 0 (m = ``ordinal_size``); with ``use_fraction_label=True`` a label between k - 1 and k adds its
    fraction, so 1.2 with m = 2 gives [1.0, 0.2]. Reduced over batch * list_size, as TF Ranking does.

    ``get_config`` also carries ``ordinal_size`` and ``use_fraction_label`` (TF Ranking's leaves them out, so that a
    model saved by it reloads with ``ordinal_size=1``).

    >>> round(float(OrdinalLoss(ordinal_size=2)([[1.0, 0.0]], [[[0.6, 0.2], [0.8, 0.3]]])), 5)
    1.63054
    """

    depth_name = "ordinal_size"

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        ragged: bool = False,
        ordinal_size: int = 1,
        use_fraction_label: bool = False,
        **kwargs,
    ):
        super().__init__(reduction=reduction, name=name, ragged=ragged, **kwargs)
        self.ordinal_size = _arguments.check_count(ordinal_size, "ordinal_size", "OrdinalLoss",
                                                   "an int >= 1, the number of levels")
        self.use_fraction_label = bool(use_fraction_label)

    def ordinals(self, labels: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """[batch, list_size, ordinal_size] targets: 1 for each level k <= label (plus the fraction if asked)."""
        levels = tf.range(1, self.ordinal_size + 1, dtype=tf.float32)
        labels = labels[:, :, tf.newaxis]
        ordinals = tf.cast(labels >= levels, tf.float32)
        if self.use_fraction_label:
            fractions = labels - levels + 1.0
            ordinals += tf.where((fractions > 0.0) & (fractions < 1.0), fractions, 0.0)
        return tf.where(mask[:, :, tf.newaxis], ordinals, 0.0)

    def compute(self, labels, scores, mask, sample_weight):
        self.check_depth(scores, self.ordinal_size)
        labels = tf.where(mask, labels, 0.0)
        losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=self.ordinals(labels, mask), logits=scores)
        losses = tf.where(mask[:, :, tf.newaxis], losses, 0.0)
        return tf.reduce_sum(losses, axis=2), item_weights(sample_weight, mask)

    def get_config(self):
        config = super().get_config()
        config.update({"ordinal_size": self.ordinal_size, "use_fraction_label": self.use_fraction_label})
        return config


@keras.saving.register_keras_serializable(package="tfrank")
class ClickEMLoss(_ItemVectorLoss):
    r"""Click EM loss (Wang et al., 2018): clicks from P(examination) * P(relevance), scores
    ``[batch, list_size, 2]`` = (examination logit e, relevance logit r) per item.

    E step (no gradient): a clicked item (label >= 1) was examined and relevant; otherwise
    P(exam | no click) = sigmoid(e - softplus(r)) and P(rel | no click) = sigmoid(r - softplus(e)).
    M step: ``exam_loss_weight`` * sigmoid cross-entropy(P(exam | .), e) + ``rel_loss_weight`` * the same for r,
    per valid item, reduced over batch * list_size.

    >>> round(float(ClickEMLoss()([[1.0, 0.0]], [[[0.6, 0.9], [0.8, 0.2]]])), 5)
    1.14629
    """

    depth_name = "2 (examination and relevance logits)"

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        exam_loss_weight: float = 1.0,
        rel_loss_weight: float = 1.0,
        ragged: bool = False,
        **kwargs,
    ):
        super().__init__(reduction=reduction, name=name, ragged=ragged, **kwargs)
        self.exam_loss_weight = float(exam_loss_weight)
        self.rel_loss_weight = float(rel_loss_weight)

    def compute(self, labels, scores, mask, sample_weight):
        self.check_depth(scores, 2)
        clicked = tf.where(mask, labels, 0.0) >= 1.0
        exam_logits, rel_logits = scores[:, :, 0], scores[:, :, 1]
        exam_posterior = tf.where(clicked, 1.0, tf.sigmoid(exam_logits - tf.math.softplus(rel_logits)))
        rel_posterior = tf.where(clicked, 1.0, tf.sigmoid(rel_logits - tf.math.softplus(exam_logits)))
        exam_posterior, rel_posterior = tf.stop_gradient(exam_posterior), tf.stop_gradient(rel_posterior)
        losses = self.exam_loss_weight * tf.nn.sigmoid_cross_entropy_with_logits(labels=exam_posterior,
                                                                                  logits=exam_logits)
        losses += self.rel_loss_weight * tf.nn.sigmoid_cross_entropy_with_logits(labels=rel_posterior,
                                                                                 logits=rel_logits)
        return losses, item_weights(sample_weight, mask)

    def get_config(self):
        config = super().get_config()
        config.update({"exam_loss_weight": self.exam_loss_weight, "rel_loss_weight": self.rel_loss_weight})
        return config
