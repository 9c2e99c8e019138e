"""Pairwise losses: every pair of valid items (i, j) with y_i > y_j adds loss(s_i - s_j).

For a list, row i collects sum_j I[y_i > y_j] * lambda_ij * loss(s_i - s_j) and is weighted by item i's sample
weight; the batch loss is the sum of the rows over batch * list_size, TF Ranking 0.5.5's value. ``lambda_ij`` is 1
or a lambda weight's pair weight (computed from the ranks by score, and never differentiated).

A new pairwise loss is a subclass that implements ``pairwise_loss``; ``pairwise_loss_derivative`` is optional and
only speeds up the gradient.
"""

import abc
from typing import Callable, Optional

import keras
import tensorflow as tf

from tfrank import ops
from tfrank.losses import lambda_weights as lambda_weights_lib
from tfrank.losses._base import RankingLoss, item_weights
from tfrank.losses._gumbel import GumbelSampling


def _pair_loss_row_sums(
    scores: tf.Tensor,
    pairs: tf.Tensor,
    loss_fn: Callable[[tf.Tensor], tf.Tensor],
    derivative_fn: Callable[[tf.Tensor], tf.Tensor],
) -> tf.Tensor:
    """sum_j [pairs_ij] loss_fn(s_i - s_j) per row, [batch, list_size], for any elementwise pair loss.

    The gradient is written by hand: only the boolean pair mask is kept between the forward and the backward pass,
    which recomputes s_i - s_j, so a step holds fewer float list_size^2 tensors than automatic differentiation.
    """

    @tf.custom_gradient
    def row_sums(scores, pairs):
        pair_losses = tf.where(pairs, loss_fn(ops.pairwise_difference(scores)), 0.0)

        def grad(upstream):
            slopes = tf.where(pairs, derivative_fn(ops.pairwise_difference(scores)) * upstream[:, :, tf.newaxis], 0.0)
            # d(s_i - s_j)/ds_i = 1 and d(s_i - s_j)/ds_j = -1.
            return tf.reduce_sum(slopes, axis=2) - tf.reduce_sum(slopes, axis=1), None

        return tf.reduce_sum(pair_losses, axis=2), grad

    return row_sums(scores, pairs)


_SMALL_LIST_SIZE = 16


def _weighted_column_sums(matrix: tf.Tensor, vector: tf.Tensor) -> tf.Tensor:
    """sum_i vector_i matrix_ij, [batch, list_size]: a batched matrix-vector product, or for short lists (where
    the per-op cost of a tiny matmul dominates) a multiply and a sum."""
    list_size = matrix.shape[-1]
    if list_size is not None and list_size <= _SMALL_LIST_SIZE:
        return tf.reduce_sum(matrix * vector[:, :, tf.newaxis], axis=1)
    return tf.linalg.matvec(matrix, vector, transpose_a=True)


def _weighted_row_sums(matrix: tf.Tensor, vector: tf.Tensor) -> tf.Tensor:
    """sum_j matrix_ij vector_j, [batch, list_size], chosen like ``_weighted_column_sums``."""
    list_size = matrix.shape[-1]
    if list_size is not None and list_size <= _SMALL_LIST_SIZE:
        return tf.reduce_sum(matrix * vector[:, tf.newaxis, :], axis=2)
    return tf.linalg.matvec(matrix, vector)


def _hinge_row_sums(scores: tf.Tensor, pairs: tf.Tensor) -> tf.Tensor:
    """sum_j [pairs_ij] max(0, 1 - (s_i - s_j)) per row, from one boolean and one float list_size^2 tensor.

    With A_ij = [pairs_ij and s_j > s_i - 1] (the pairs inside the margin) the row sum is
    count_i (1 - s_i) + sum_j A_ij s_j, and its gradient needs only A: -count_i for s_i and the column sums
    of A weighted by the upstream gradient (a batched matrix-vector product) for s_j.
    """

    @tf.custom_gradient
    def row_sums(scores, pairs):
        inside_margin = tf.greater(scores[:, tf.newaxis, :], scores[:, :, tf.newaxis] - 1.0)
        active = tf.cast(tf.logical_and(pairs, inside_margin), tf.float32)
        count = tf.reduce_sum(active, axis=2)

        def grad(upstream):
            return _weighted_column_sums(active, upstream) - upstream * count, None

        return count * (1.0 - scores) + _weighted_row_sums(active, scores), grad

    return row_sums(scores, pairs)


def _logistic_row_sums(scores: tf.Tensor, pairs: tf.Tensor) -> tf.Tensor:
    """sum_j [pairs_ij] log(1 + exp(-(s_i - s_j))) per row; the backward pass is one matrix-vector product.

    The forward pass keeps P_ij = d loss_ij / d s_j = sigmoid(s_j - s_i) on pairs (d / d s_i is -P_ij). As in
    TF Ranking's formula the slope is 0 where s_i == s_j exactly.
    """

    @tf.custom_gradient
    def row_sums(scores, pairs):
        # s_j - s_i on pairs and -inf elsewhere, where both softplus and sigmoid are 0: no mask on their outputs.
        reversed_logits = tf.where(pairs, scores[:, tf.newaxis, :] - scores[:, :, tf.newaxis], -float("inf"))
        value = tf.reduce_sum(tf.nn.softplus(reversed_logits), axis=2)
        slopes = tf.where(tf.equal(reversed_logits, 0.0), 0.0, tf.sigmoid(reversed_logits))
        slope_sums = tf.reduce_sum(slopes, axis=2)

        def grad(upstream):
            return _weighted_column_sums(slopes, upstream) - upstream * slope_sums, None

        return value, grad

    return row_sums(scores, pairs)


class PairwiseLoss(RankingLoss):
    """Base of the pairwise losses: a subclass implements ``pairwise_loss(pairwise_logits)``.

    ``pairwise_logits`` holds s_i - s_j (scores already divided by ``temperature``) for pairs where item i is
    preferred (y_i > y_j); the method returns the elementwise loss of each pair.

    A new pairwise loss, e.g. the squared hinge max(0, 1 - x)^2:

    >>> import tensorflow as tf
    >>> class PairwiseSquaredHingeLoss(PairwiseLoss):
    ...     def pairwise_loss(self, pairwise_logits):
    ...         return tf.square(tf.nn.relu(1.0 - pairwise_logits))
    >>> round(float(PairwiseSquaredHingeLoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    0.72

    With a lambda weight, pairs are weighted by the ranks of the items by score; tied scores are ranked in input
    order (TF Ranking breaks such ties at random).

    Args:
      reduction: how the batch is reduced; default ``"sum_over_batch_size"`` (TF Ranking's AUTO).
      name: the loss name.
      lambda_weight: optional pair weights, e.g. ``NDCGLambdaWeight()``.
      temperature: scores are divided by it before pairs are formed; > 0.
      ragged: accept ``tf.RaggedTensor`` labels, scores and per-item weights (dense ones still work).
    """

    def _check_lambda_weight(self, lambda_weight):
        if isinstance(lambda_weight, lambda_weights_lib.ListMLELambdaWeight):
            raise ValueError(f"lambda_weight={lambda_weight!r} has no pair weights; use it with ListMLELoss")
        return super()._check_lambda_weight(lambda_weight)

    @abc.abstractmethod
    def pairwise_loss(self, pairwise_logits: tf.Tensor) -> tf.Tensor:
        """The loss of each pair given s_i - s_j, elementwise."""

    def pairwise_loss_derivative(self, pairwise_logits: tf.Tensor) -> tf.Tensor:
        """d pairwise_loss / d pairwise_logits, elementwise; by default found by automatic differentiation."""
        with tf.GradientTape() as tape:
            tape.watch(pairwise_logits)
            losses = self.pairwise_loss(pairwise_logits)
        return tape.gradient(losses, pairwise_logits)

    def row_sums(self, scores: tf.Tensor, pairs: tf.Tensor) -> tf.Tensor:
        """sum_j [pairs_ij] pairwise_loss(s_i - s_j) per row; subclasses may override it with a faster kernel."""
        return _pair_loss_row_sums(scores, pairs, self.pairwise_loss, self.pairwise_loss_derivative)

    def pair_weights(self, labels: tf.Tensor, scores: tf.Tensor, mask: tf.Tensor, pairs: tf.Tensor) -> tf.Tensor:
        """Float weights of the pairs: the preferred-pair mask times the lambda weight, without gradient."""
        weights = tf.cast(pairs, tf.float32)
        if self.lambda_weight is not None:
            weights *= self.lambda_weight.pair_weights(labels, ops.ranks_by_scores(scores, mask))
        return tf.stop_gradient(weights)

    def compute(self, labels, scores, mask, sample_weight):
        pairs = ops.preferred_pairs(labels, mask)
        if self.lambda_weight is None:
            rows = self.row_sums(scores, pairs)
        else:
            pair_losses = self.pairwise_loss(ops.pairwise_difference(scores))
            rows = tf.reduce_sum(pair_losses * self.pair_weights(labels, scores, mask, pairs), axis=2)
        return rows, item_weights(sample_weight, mask)


@keras.saving.register_keras_serializable(package="tfrank")
class PairwiseHingeLoss(PairwiseLoss):
    r"""Pairwise hinge loss: sum_i sum_j I[y_i > y_j] max(0, 1 - (s_i - s_j)).

    >>> import tensorflow as tf
    >>> round(float(PairwiseHingeLoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    0.6
    >>> loss = PairwiseHingeLoss(ragged=True)
    >>> round(float(loss(tf.ragged.constant([[1.0, 0.0], [0.0, 1.0, 0.0]]),
    ...                  tf.ragged.constant([[0.6, 0.8], [0.5, 0.8, 0.4]]))), 5)
    0.41667
    """

    def pairwise_loss(self, pairwise_logits):
        return tf.nn.relu(1.0 - pairwise_logits)

    def pairwise_loss_derivative(self, pairwise_logits):
        return -tf.cast(pairwise_logits < 1.0, tf.float32)

    def row_sums(self, scores, pairs):
        return _hinge_row_sums(scores, pairs)


@keras.saving.register_keras_serializable(package="tfrank")
class PairwiseLogisticLoss(PairwiseLoss):
    r"""Pairwise logistic loss (RankNet): sum_i sum_j I[y_i > y_j] log(1 + exp(-(s_i - s_j))).

    >>> import tensorflow as tf
    >>> round(float(PairwiseLogisticLoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    0.39907
    >>> loss = PairwiseLogisticLoss(ragged=True)
    >>> round(float(loss(tf.ragged.constant([[1.0, 0.0], [0.0, 1.0, 0.0]]),
    ...                  tf.ragged.constant([[0.6, 0.8], [0.5, 0.8, 0.4]]))), 5)
    0.31092
    """

    def pairwise_loss(self, pairwise_logits):
        # The stable form of log(1 + exp(-x)); like TF Ranking's, its gradient is 0 at exactly x = 0 (tied scores).
        return tf.nn.relu(-pairwise_logits) + tf.math.log1p(tf.exp(-tf.abs(pairwise_logits)))

    def pairwise_loss_derivative(self, pairwise_logits):
        return tf.where(pairwise_logits == 0.0, 0.0, -tf.sigmoid(-pairwise_logits))

    def row_sums(self, scores, pairs):
        return _logistic_row_sums(scores, pairs)


@keras.saving.register_keras_serializable(package="tfrank")
class PairwiseSoftZeroOneLoss(PairwiseLoss):
    r"""Pairwise soft zero-one loss: sum_i sum_j I[y_i > y_j] (1 - sigmoid(s_i - s_j)).

    >>> round(float(PairwiseSoftZeroOneLoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    0.27492
    """

    def pairwise_loss(self, pairwise_logits):
        return tf.sigmoid(-pairwise_logits)

    def pairwise_loss_derivative(self, pairwise_logits):
        probability = tf.sigmoid(pairwise_logits)
        return -probability * (1.0 - probability)


@keras.saving.register_keras_serializable(package="tfrank")
class PairwiseMSELoss(PairwiseLoss):
    r"""Pairwise squared error: sum_i sum_{j != i} ((s_i - s_j) - (y_i - y_j))^2 over all pairs of valid items,
    equal labels included (only the diagonal is left out).

    >>> round(float(PairwiseMSELoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    1.44
    """

    def pairwise_loss(self, pairwise_logits):
        return tf.square(pairwise_logits)

    def pairwise_loss_derivative(self, pairwise_logits):
        return 2.0 * pairwise_logits

    def compute(self, labels, scores, mask, sample_weight):
        valid = tf.cast(mask, tf.float32)
        list_size = tf.shape(labels)[1]
        pair_weights = valid[:, :, tf.newaxis] * valid[:, tf.newaxis, :] * (1.0 - tf.eye(list_size))
        if self.lambda_weight is not None:
            pair_weights *= self.lambda_weight.pair_weights(labels, ops.ranks_by_scores(scores, mask))
        pair_weights = tf.stop_gradient(pair_weights)
        errors = ops.pairwise_difference(scores) - ops.pairwise_difference(labels)
        rows = tf.reduce_sum(tf.square(errors) * pair_weights, axis=2)
        return rows, item_weights(sample_weight, mask)


@keras.saving.register_keras_serializable(package="tfrank")
class YetiLogisticLoss(GumbelSampling, PairwiseLogisticLoss):
    r"""Yeti loss (Lyzhin et al., 2022): the pairwise logistic loss on Gumbel-perturbed scores, weighted by
    ``YetiDCGLambdaWeight`` (neighbouring ranks only), averaged over ``sample_size`` draws.

    loss = sum_a sum_i sum_{j = i +- 1} I[y_i > y_j] w_ij log(1 + exp(-(z^a_i - z^a_j))), with z^a the Gumbel
    sample a of the scores (see ``tfrank.losses._gumbel``) divided by ``temperature`` and w_ij the lambda weight
    at the ranks of z^a. ``lambda_weight`` defaults to ``YetiDCGLambdaWeight()``.

    Difference from TF Ranking: the noise is a stateless draw from ``seed`` (None means 0), so the loss is a
    deterministic function of its inputs; given the same noise the value equals TF Ranking's.

    >>> loss = YetiLogisticLoss(seed=1)
    >>> bool(loss([[1.0, 0.0]], [[0.6, 0.8]]) == loss([[1.0, 0.0]], [[0.6, 0.8]]))
    True
    """

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        lambda_weight: Optional[lambda_weights_lib.LambdaWeight] = None,
        temperature: float = 1.0,
        sample_size: int = 8,
        gumbel_temperature: float = 1.0,
        seed: Optional[int] = None,
        ragged: bool = False,
        **kwargs,
    ):
        lambda_weight = lambda_weight or lambda_weights_lib.YetiDCGLambdaWeight()
        super().__init__(reduction, name, lambda_weight, temperature, ragged, **kwargs)
        self._init_gumbel(sample_size, gumbel_temperature, seed)
