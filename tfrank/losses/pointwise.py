"""Pointwise losses: each valid item is scored on its own against its label; padded items cost nothing.

The batch loss is sum_{lists, valid items} w_i * loss(y_i, s_i) / (batch * list_size), TF Ranking 0.5.5's value.
"""

import abc
from typing import Optional

import keras
import tensorflow as tf

from tfrank.losses._base import RankingLoss, item_weights


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
