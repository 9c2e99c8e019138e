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

Ragged lists: build the loss with ``ragged=True`` and pass ``tf.RaggedTensor`` labels and scores [batch,
(list_size)], and optionally ragged per-item weights; they are padded here once (labels with -1). Keras 3's
``model.fit`` hands ragged ``y``, ``sample_weight`` and model outputs to the loss unchanged (TF backend, data from a
``tf.data.Dataset``): the model must return a ``tf.RaggedTensor`` itself, e.g. a subclassed model that scores
``features.flat_values``; a Functional model cannot output one.
"""

from typing import Any, Dict, Optional, Tuple

import keras
import tensorflow as tf

from tfrank import ops
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


def _check_temperature(temperature: float, owner: str) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: {owner} needs a temperature > 0")
    return float(temperature)


def _shape_str(tensor) -> str:
    if isinstance(tensor, tf.RaggedTensor):
        return f"{tensor.shape} (ragged)"
    return str(tensor.shape)


def _check_same_row_lengths(first: tf.RaggedTensor, second: tf.RaggedTensor, first_name: str, second_name: str):
    """Eagerly compares the list lengths of two ragged batches (inside tf.function the shapes cannot be read)."""
    if not tf.executing_eagerly():
        return
    first_lengths = first.row_lengths().numpy().tolist()
    second_lengths = second.row_lengths().numpy().tolist()
    if first_lengths != second_lengths:
        raise ValueError(
            f"{first_name} {_shape_str(first)} with list lengths {first_lengths} and {second_name} "
            f"{_shape_str(second)} with list lengths {second_lengths}: need the same lists"
        )


def _to_dense_inputs(y_true, y_pred, sample_weight):
    """(labels, scores, sample_weight, mask) as dense float32 tensors; mask is None for dense inputs."""
    if isinstance(y_true, tf.RaggedTensor) != isinstance(y_pred, tf.RaggedTensor):
        raise ValueError(
            f"labels {_shape_str(y_true)} and scores {_shape_str(y_pred)}: both must be tf.RaggedTensor or neither"
        )
    if isinstance(y_true, tf.RaggedTensor):
        if y_true.shape.rank != 2 or y_pred.shape.rank != 2:
            raise ValueError(
                f"labels {_shape_str(y_true)} and scores {_shape_str(y_pred)}: need rank 2, [batch, (list_size)]"
            )
        _check_same_row_lengths(y_true, y_pred, "labels", "scores")
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        if isinstance(sample_weight, tf.RaggedTensor):
            _check_same_row_lengths(sample_weight, y_true, "sample_weight", "labels")
            sample_weight = tf.cast(sample_weight, tf.float32)
        labels, scores, sample_weight, structure = ops.ragged_to_dense(y_true, y_pred, sample_weight)
        return labels, scores, sample_weight, structure
    labels = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
    scores = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
    if labels.shape.rank != 2 or not labels.shape.is_compatible_with(scores.shape):
        raise ValueError(
            f"labels {labels.shape} and scores {scores.shape}: need the same shape [batch, list_size]"
        )
    return labels, scores, sample_weight, None


def _check_sample_weight(sample_weight, labels: tf.Tensor) -> Optional[tf.Tensor]:
    """Dense float32 weights of shape [], [batch, 1] or [batch, list_size]; a [batch] vector becomes [batch, 1]."""
    if sample_weight is None:
        return None
    sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
    if sample_weight.shape.rank == 1:
        sample_weight = sample_weight[:, tf.newaxis]
    rank = sample_weight.shape.rank
    ok = rank == 0 or (
        rank == 2
        and sample_weight.shape[:1].is_compatible_with(labels.shape[:1])
        and (sample_weight.shape[1] == 1 or sample_weight.shape[1:].is_compatible_with(labels.shape[1:]))
    )
    if not ok:
        raise ValueError(
            f"sample_weight {sample_weight.shape} and labels {labels.shape}: sample_weight must be a scalar, "
            "per list [batch, 1] or per item [batch, list_size]"
        )
    return sample_weight


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


class RankingLoss(keras.losses.Loss):
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
        self.temperature = _check_temperature(temperature, type(self).__name__)
        if lambda_weight is not None and not isinstance(lambda_weight, lambda_weights_lib.LambdaWeight):
            raise ValueError(
                f"lambda_weight={lambda_weight!r}: must be a tfrank.losses lambda weight such as NDCGLambdaWeight()"
            )
        self.lambda_weight = lambda_weight
        self.ragged = bool(ragged)

    def compute(
        self, labels: tf.Tensor, scores: tf.Tensor, mask: tf.Tensor, sample_weight: Optional[tf.Tensor]
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        """(values, weights), broadcastable to each other; the loss is their weighted, reduced product."""
        raise NotImplementedError

    def prepare(self, y_true, y_pred, sample_weight=None):
        """Dense ``(labels, scores, mask, sample_weight)`` from dense or ragged inputs; scores not yet scaled."""
        labels, scores, sample_weight, structure = _to_dense_inputs(y_true, y_pred, sample_weight)
        sample_weight = _check_sample_weight(sample_weight, labels)
        mask = ops.is_label_valid(labels)
        if structure is not None:
            mask = tf.logical_and(mask, structure)
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
