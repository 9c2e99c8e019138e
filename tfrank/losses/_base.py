"""The one base of every tfrank loss: input checks, ragged-to-dense, masking, weight normalisation and reduction.

A loss sees dense ``labels`` and ``scores`` [batch, list_size] (scores already divided by the temperature), a
boolean ``mask`` of valid items (label >= 0, and present in a ragged input) and the caller's ``sample_weight``;
it returns per-item, per-row or per-list ``values`` and their ``weights``. The base multiplies the two and reduces
them the way TF Ranking 0.5.5's Keras losses do with their default reduction: ``sum(values * weights) /
values.size``.

How the caller's ``sample_weight`` (per list [batch, 1] or per item [batch, list_size]) becomes ``weights``
depends on the family, as in TF Ranking:
- pointwise: each valid item's loss is weighted by its weight;
- pairwise: pair (i, j) is weighted by the weight of item i (the preferred item);
- listwise: a list is weighted by the label-weighted mean of its item weights, sum_i w_i y_i / sum_i y_i
  (so a list whose labels are all 0 gets weight 0).

Inputs follow ``tfrank.ops.prepare_lists``, the rule the metrics share: padded lists (label < 0 marks padding)
or, with ``ragged=True``, ``tf.RaggedTensor`` labels [batch, (list_size)] with ragged scores, or padded scores whose
row i starts with list i's scores, and optionally ragged per-item weights. ``ragged=False`` rejects ragged inputs;
list lengths that disagree are an error in eager and graph mode alike. Whatever a padded slot's score is (NaN and
inf included) it never reaches a loss. Keras 3's ``model.fit`` hands ragged ``y``, ``sample_weight`` and model
outputs to the loss unchanged (TF backend, data from a ``tf.data.Dataset``).
"""

import abc
from typing import Any, Dict, Optional, Tuple

import keras
import tensorflow as tf

from tfrank import ops
from tfrank._arguments import check_positive
from tfrank.losses import lambda_weights as lambda_weights_lib

_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none")


def _standardize_reduction(reduction: Optional[str]) -> str:
    if reduction is None:
        return "none"
    if reduction == "auto":  # TF Ranking's default, Keras 2's AUTO, is SUM_OVER_BATCH_SIZE.
        return "sum_over_batch_size"
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: must be one of {list(_REDUCTIONS)}, 'auto' or None")
    return reduction


def item_weights(sample_weight: Optional[tf.Tensor], mask: tf.Tensor) -> tf.Tensor:
    """Per-item weights [batch, list_size]: the caller's weight on valid items, 0 on invalid ones."""
    ones = tf.cast(mask, tf.float32)
    return ones if sample_weight is None else ones * sample_weight


def list_weights(sample_weight: Optional[tf.Tensor], labels: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Per-list weights [batch, 1]: sum_i w_i y_i / sum_i y_i over valid items (0 if the labels sum to 0)."""
    if sample_weight is None:
        return tf.ones_like(labels[:, :1])
    clean_labels = tf.where(mask, labels, 0.0)
    return tf.math.divide_no_nan(
        tf.reduce_sum(sample_weight * clean_labels, axis=1, keepdims=True),
        tf.reduce_sum(clean_labels, axis=1, keepdims=True),
    )


def prepare_item_vectors(y_true, y_pred, sample_weight, ragged: bool, owner: str, depth_name: str):
    """Dense ``(labels, scores, mask, sample_weight)`` for losses that score each item with a vector.

    Labels are ``[batch, list_size]`` (or ragged ``[batch, (list_size)]``) and scores ``[batch, list_size, depth]``
    (or ragged ``[batch, (list_size), depth]``, or padded for ragged labels); everything else follows
    ``tfrank.ops.prepare_lists``, which checks the first score of each item. Scores of invalid items are 0.
    """
    if isinstance(y_pred, tf.RaggedTensor):
        if y_pred.shape.rank != 3:
            raise ValueError(f"scores {y_pred.shape} (ragged): {owner} needs scores [batch, (list_size), {depth_name}]")
        dense_scores = tf.cast(y_pred.to_tensor(0.0), tf.float32)
        first_scores = y_pred[:, :, 0]
    else:
        dense_scores = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
        if dense_scores.shape.rank != 3:
            raise ValueError(f"scores {dense_scores.shape}: {owner} needs scores [batch, list_size, {depth_name}]")
        first_scores = dense_scores[:, :, 0]
    labels, _, sample_weight, mask = ops.prepare_lists(y_true, first_scores, sample_weight, ragged=ragged, owner=owner)
    # Padded scores of a ragged batch may be wider than its longest list.
    dense_scores = dense_scores[:, : tf.shape(labels)[1], :]
    dense_scores = tf.where(mask[:, :, tf.newaxis], dense_scores, 0.0)
    return labels, dense_scores, mask, sample_weight


class ItemVectorScores:
    """Mixin for a ``RankingLoss`` whose scores are a vector per item, ``[batch, list_size, depth]``."""

    depth_name = "depth"

    def prepare(self, y_true, y_pred, sample_weight=None):
        return prepare_item_vectors(y_true, y_pred, sample_weight, self.ragged, type(self).__name__, self.depth_name)

    def check_depth(self, scores: tf.Tensor, depth: int):
        """ValueError unless the last dimension of ``scores`` is ``depth`` (when it is known)."""
        if scores.shape[-1] is not None and scores.shape[-1] != depth:
            raise ValueError(f"scores {scores.shape}: {type(self).__name__} needs {self.depth_name}={depth} as the "
                             "last dimension of the scores")


class RankingLoss(keras.losses.Loss, metaclass=abc.ABCMeta):
    """Base class of the tfrank ranking losses (a ``keras.losses.Loss``).

    Subclasses implement ``compute(labels, scores, mask, sample_weight) -> (values, weights)``; everything else
    (ragged inputs, shape checks, the valid mask, temperature, reduction, config) lives here.
    """

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        lambda_weight: Optional[lambda_weights_lib.LambdaWeight] = None,
        temperature: float = 1.0,
        ragged: bool = False,
        **kwargs,
    ):
        reduction = _standardize_reduction(reduction)
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.temperature = check_positive(temperature, "temperature", type(self).__name__)
        self.lambda_weight = self._check_lambda_weight(lambda_weight)
        self.ragged = bool(ragged)

    def _check_lambda_weight(
        self, lambda_weight: Optional[lambda_weights_lib.LambdaWeight]
    ) -> Optional[lambda_weights_lib.LambdaWeight]:
        """``lambda_weight`` if this loss can use it, else ValueError; a family narrows it by overriding this."""
        if lambda_weight is not None and not isinstance(lambda_weight, lambda_weights_lib.LambdaWeight):
            raise ValueError(
                f"lambda_weight={lambda_weight!r}: must be a tfrank.losses lambda weight such as NDCGLambdaWeight()"
            )
        return lambda_weight

    @abc.abstractmethod
    def compute(
        self, labels: tf.Tensor, scores: tf.Tensor, mask: tf.Tensor, sample_weight: Optional[tf.Tensor]
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        """(values, weights), broadcastable to each other; the loss is their weighted, reduced product."""

    def prepare(self, y_true, y_pred, sample_weight=None):
        """Dense ``(labels, scores, mask, sample_weight)`` from dense or ragged inputs; scores not yet scaled."""
        labels, scores, sample_weight, mask = ops.prepare_lists(
            y_true, y_pred, sample_weight, ragged=self.ragged, owner=type(self).__name__
        )
        return labels, scores, mask, sample_weight

    def __call__(self, y_true, y_pred, sample_weight=None) -> tf.Tensor:
        with tf.name_scope(self.name):
            labels, scores, mask, sample_weight = self.prepare(y_true, y_pred, sample_weight)
            values, weights = self.compute(labels, self.scale(scores), mask, sample_weight)
            return self._reduce(values, weights)

    def scale(self, scores: tf.Tensor) -> tf.Tensor:
        """Scores divided by the temperature."""
        return scores if self.temperature == 1.0 else scores / self.temperature

    def call(self, y_true, y_pred) -> tf.Tensor:
        """Unreduced weighted values (per item, per row or per list), without sample weights."""
        labels, scores, mask, _ = self.prepare(y_true, y_pred)
        values, weights = self.compute(labels, self.scale(scores), mask, None)
        return values * weights

    def _reduce(self, values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        weighted = values * weights
        if self.reduction == "none":
            return weighted
        total = tf.reduce_sum(weighted)
        if self.reduction == "sum":
            return total
        if self.reduction == "mean_with_sample_weight":
            return tf.math.divide_no_nan(total, tf.reduce_sum(weights * tf.ones_like(values)))
        size = weighted.shape.num_elements()
        if size:  # a static, non-zero size: one multiplication instead of a division op in both passes
            return total * (1.0 / size)
        return tf.math.divide_no_nan(total, tf.cast(tf.size(weighted), tf.float32))

    def get_config(self) -> Dict[str, Any]:
        config = {"name": self.name, "reduction": self.reduction, "ragged": self.ragged}
        if "temperature" in self._config_args():
            config["temperature"] = self.temperature
        if "lambda_weight" in self._config_args():
            config["lambda_weight"] = (
                None if self.lambda_weight is None else keras.saving.serialize_keras_object(self.lambda_weight)
            )
        return config

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "RankingLoss":
        config = dict(config)
        config.pop("dtype", None)
        if isinstance(config.get("lambda_weight"), dict):
            config["lambda_weight"] = keras.saving.deserialize_keras_object(config["lambda_weight"])
        return cls(**config)

    @classmethod
    def _config_args(cls) -> Tuple[str, ...]:
        return ("lambda_weight", "temperature")
