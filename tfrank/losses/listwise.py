"""Listwise losses: one loss per list, from all of its valid items at once.

``MixtureEMLoss`` takes a vector of scores per item, ``[batch, list_size, models]``.

Unless a class says otherwise the batch loss is sum_lists w_list * loss_list / batch, where w_list is the caller's
weight normalised as in ``tfrank.losses._base.list_weights`` times the loss's own weight of the list (e.g. 0 for a
list whose labels are all 0). Numbers follow TF Ranking 0.5.5.
"""

import abc
import math
from typing import Optional

import keras
import tensorflow as tf

from tfrank import _arguments, ops
from tfrank.losses import lambda_weights as lambda_weights_lib
from tfrank.losses._base import ItemVectorScores, RankingLoss, list_weights
from tfrank.losses._gumbel import GumbelSampling, stateless_gumbel

# Smallest probability: padded items get log(_EPSILON) as score where they must weigh ~nothing in a softmax.
_EPSILON = 1e-10
_LOG_EPSILON = math.log(_EPSILON)


class ListwiseLoss(RankingLoss):
    """Base of the listwise losses: subclasses implement ``list_loss(labels, scores, mask) -> (loss, weight)``,
    both [batch, 1].

    Args:
      reduction: how the batch is reduced; default ``"sum_over_batch_size"`` (TF Ranking's AUTO).
      name: the loss name.
      lambda_weight: optional lambda weight, used where the class says so.
      temperature: scores are divided by it first; > 0.
      ragged: accept ``tf.RaggedTensor`` labels, scores and per-item weights (dense ones still work).
    """

    @abc.abstractmethod
    def list_loss(self, labels: tf.Tensor, scores: tf.Tensor, mask: tf.Tensor):
        """(loss, weight) of each list, both [batch, 1] (or [batch]), before the caller's weights."""

    def compute(self, labels, scores, mask, sample_weight):
        losses, loss_weights = self.list_loss(labels, scores, mask)
        return losses, loss_weights * list_weights(sample_weight, labels, mask)


@keras.saving.register_keras_serializable(package="tfrank")
class SoftmaxLoss(ListwiseLoss):
    r"""Softmax cross-entropy between the label distribution and the softmax of the scores.

    loss = -sum_i (y_i / sum_j y_j) log(exp(s_i) / sum_j exp(s_j)), weighted by sum_j y_j.

    The caller's weights multiply the labels first (per item or per list), and a ``DCGLambdaWeight`` or
    ``NDCGLambdaWeight`` replaces the labels by their ``individual_weights`` (gain times rank discount) before
    that; other lambda weights are ignored, as in TF Ranking. Each list weighs sum_j y_j (after those
    multiplications), so lists whose labels are all 0 add nothing.

    >>> import tensorflow as tf
    >>> round(float(SoftmaxLoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    0.79814
    >>> loss = SoftmaxLoss(ragged=True)
    >>> round(float(loss(tf.ragged.constant([[1.0, 0.0], [0.0, 1.0, 0.0]]),
    ...                  tf.ragged.constant([[0.6, 0.8], [0.5, 0.8, 0.4]]))), 5)
    0.83912
    """

    def compute(self, labels, scores, mask, sample_weight):
        # The caller's weights scale the labels (the target) rather than the list's loss, as in TF Ranking.
        labels = tf.where(mask, labels, 0.0)
        if isinstance(self.lambda_weight, lambda_weights_lib.DCGLambdaWeight):
            labels = self.lambda_weight.individual_weights(labels, ops.ranks_by_scores(scores, mask))
        if sample_weight is not None:
            labels *= sample_weight
        return self.list_loss(labels, scores, mask)

    def list_loss(self, labels, scores, mask):
        labels = tf.where(mask, labels, 0.0)
        scores = tf.where(mask, scores, _LOG_EPSILON)
        label_sum = tf.reduce_sum(labels, axis=1, keepdims=True)
        # A list whose labels sum to 0 still gets a finite loss (uniform target); its weight is 0 anyway.
        labels = tf.where(label_sum > 0.0, labels, _EPSILON)
        labels = tf.where(mask, labels, 0.0)
        target = tf.math.divide_no_nan(labels, tf.reduce_sum(labels, axis=1, keepdims=True))
        losses = tf.nn.softmax_cross_entropy_with_logits(labels=target, logits=scores)
        return losses, label_sum[:, 0]


@keras.saving.register_keras_serializable(package="tfrank")
class CalibratedSoftmaxLoss(SoftmaxLoss):
    r"""Calibrated softmax loss (Yan et al., 2022): ``SoftmaxLoss`` with a virtual item of score 0 and label y_0.

    loss = -sum_i y_i log(exp(s_i) / (1 + sum_j exp(s_j))) - y_0 log(1 / (1 + sum_j exp(s_j))), y_0 =
    ``virtual_label`` >= 0. The virtual item is appended to each list (after any padding); it takes the list's
    weight, or weight 1 when weights are per item, as in TF Ranking.

    Extension: TF Ranking's class takes no ``ragged``; tfrank's does (the virtual item follows each list's items).

    >>> round(float(CalibratedSoftmaxLoss(virtual_label=0.1)([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    1.18082
    """

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        lambda_weight: Optional[lambda_weights_lib.LambdaWeight] = None,
        temperature: float = 1.0,
        virtual_label: float = 0.0,
        ragged: bool = False,
        **kwargs,
    ):
        super().__init__(reduction, name, lambda_weight, temperature, ragged, **kwargs)
        if isinstance(virtual_label, bool) or not isinstance(virtual_label, (int, float)) or not virtual_label >= 0:
            raise ValueError(f"virtual_label={virtual_label!r}: CalibratedSoftmaxLoss needs a virtual label >= 0")
        self.virtual_label = float(virtual_label)

    def compute(self, labels, scores, mask, sample_weight):
        virtual = tf.ones_like(labels[:, :1])
        labels = tf.concat([labels, self.virtual_label * virtual], axis=1)
        scores = tf.concat([scores, 0.0 * virtual], axis=1)
        mask = tf.concat([mask, tf.ones_like(mask[:, :1])], axis=1)
        per_item = sample_weight is not None and sample_weight.shape.rank == 2 and sample_weight.shape[1] != 1
        if per_item:
            sample_weight = tf.concat([sample_weight, virtual], axis=1)
        return super().compute(labels, scores, mask, sample_weight)

    def get_config(self):
        config = super().get_config()
        config["virtual_label"] = self.virtual_label
        return config


@keras.saving.register_keras_serializable(package="tfrank")
class UniqueSoftmaxLoss(ListwiseLoss):
    r"""Unique-rating softmax loss (Zhu & Klabjan, 2020): each item competes only with items of lower labels.

    loss = -sum_i (2^{y_i} - 1) log(exp(s_i) / (exp(s_i) + sum_j I[y_i > y_j] exp(s_j))). Lambda weights are
    ignored, as in TF Ranking.

    >>> round(float(UniqueSoftmaxLoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    0.79814
    """

    def list_loss(self, labels, scores, mask):
        labels = tf.where(mask, labels, 0.0)
        scores = tf.where(mask, scores, _LOG_EPSILON)
        pairs = ops.preferred_pairs(labels, mask)
        # log(exp(s_i) + sum_j [pairs_ij] exp(s_j)) - s_i, shifted by the row's largest competing score.
        # Non-competitors get -inf before exp (not after), so that their gradient is 0 and never 0 * inf.
        competitors = tf.where(pairs, scores[:, tf.newaxis, :], -float("inf"))
        row_max = tf.stop_gradient(tf.maximum(tf.reduce_max(competitors, axis=2), scores))
        partition = tf.exp(scores - row_max) + tf.reduce_sum(tf.exp(competitors - row_max[:, :, tf.newaxis]), axis=2)
        per_item = tf.math.log(partition) + row_max - scores
        losses = tf.reduce_sum(per_item * ops.pow_minus_1(labels), axis=1, keepdims=True)
        return losses, tf.ones_like(losses)


@keras.saving.register_keras_serializable(package="tfrank")
class ListMLELoss(ListwiseLoss):
    r"""ListMLE (Xia et al., 2008): the negative log Plackett-Luce likelihood of the order by labels.

    With items sorted by label (descending), loss = sum_k (log sum_{m >= k} exp(s_m) - s_k). A
    ``ListMLELambdaWeight`` multiplies the k-th term by its rank discount; other lambda weights are ignored.

    Differences from TF Ranking 0.5.5, which is otherwise matched:
    - ties in the labels: TF Ranking shuffles tied items at random before sorting, so its value is random;
      tfrank keeps tied items in their input order (a deterministic, stable sort);
    - padded items: TF Ranking keeps them at the end of the sorted list with score log(1e-10), which adds the
      constant log(n_padded!) to a list's loss (no gradient); tfrank adds the same constant, except that a list
      with no valid item at all gets loss 0 instead of log(list_size!).

    >>> round(float(ListMLELoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    0.79814
    """

    def list_loss(self, labels, scores, mask):
        labels = tf.where(mask, labels, 0.0)
        scores = tf.where(mask, scores, _LOG_EPSILON)
        order_keys = tf.where(mask, labels, tf.reduce_min(labels, axis=1, keepdims=True) - 1e-6)
        order = tf.argsort(order_keys, axis=1, direction="DESCENDING", stable=True)
        sorted_scores = tf.gather(scores, order, batch_dims=1)
        if isinstance(self.lambda_weight, lambda_weights_lib.ListMLELambdaWeight):
            positions = tf.range(1, tf.shape(labels)[1] + 1)[tf.newaxis, :] * tf.ones_like(order)
            terms = tf.math.cumulative_logsumexp(sorted_scores, axis=1, reverse=True) - sorted_scores
            terms *= self.lambda_weight.individual_weights(labels, positions)
            losses = tf.reduce_sum(terms, axis=1, keepdims=True)
        else:
            losses = _plackett_luce_nll(sorted_scores)
        has_valid_item = tf.reduce_any(mask, axis=1, keepdims=True)
        losses = tf.where(has_valid_item, losses, 0.0)
        return losses, tf.ones_like(losses)


def _plackett_luce_nll(sorted_scores: tf.Tensor) -> tf.Tensor:
    """sum_k (log sum_{m >= k} exp(s_m) - s_k) per list, [batch, 1], for scores in the order of the labels.

    The suffix sums are a running log-sum-exp: shifting every score by the list's maximum alone underflows exp()
    to 0 for scores far below it (log(0) = -inf, NaN gradients). The gradient is written by hand,
    d/ds_j = sum_{k <= j} exp(s_j - lse_k) - 1, from one more running log-sum-exp (of -lse_k, every term <= 1, so
    nothing overflows): cheaper than differentiating the running log-sum-exp, which splits the upstream gradient by
    sign and runs two.
    """

    @tf.custom_gradient
    def nll(sorted_scores):
        suffix_lse = tf.math.cumulative_logsumexp(sorted_scores, axis=1, reverse=True)

        def grad(upstream):
            prefix_lse = tf.math.cumulative_logsumexp(-suffix_lse, axis=1)
            return upstream * (tf.exp(sorted_scores + prefix_lse) - 1.0)

        return tf.reduce_sum(suffix_lse - sorted_scores, axis=1, keepdims=True), grad

    return nll(sorted_scores)


def _prepare_approx_inputs(labels, scores, mask):
    """Clean labels (1e-10 everywhere in all-zero lists), scores with padding far below, list weights."""
    labels = tf.where(mask, labels, 0.0)
    scores = tf.where(mask, scores, tf.reduce_min(scores, axis=1, keepdims=True) - 1e3)
    has_relevant = tf.reduce_sum(labels, axis=1, keepdims=True) > 0.0
    labels = tf.where(has_relevant, labels, _EPSILON)
    return labels, scores, tf.cast(has_relevant, tf.float32)


def _safe_gain(labels: tf.Tensor) -> tf.Tensor:
    """2^y - 1 rescaled by 2^-max(y) so that large labels cannot overflow: 2^(y - max) - 2^-max."""
    max_label = tf.reduce_max(labels, axis=1, keepdims=True)
    return tf.pow(2.0, labels - max_label) - tf.pow(2.0, -max_label)


class _ApproxLoss(ListwiseLoss):
    """Base of the losses on smooth ranks (``tfrank.ops.approx_ranks``), whose temperature defaults to 0.1."""

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        lambda_weight: Optional[lambda_weights_lib.LambdaWeight] = None,
        temperature: float = 0.1,
        ragged: bool = False,
        **kwargs,
    ):
        super().__init__(reduction, name, lambda_weight, temperature, ragged, **kwargs)


@keras.saving.register_keras_serializable(package="tfrank")
class ApproxNDCGLoss(_ApproxLoss):
    r"""ApproxNDCG (Qin et al., 2010; Bruch et al., 2019): minus NDCG with ranks replaced by smooth ranks.

    loss = -(1 / maxDCG) sum_i G(y_i) / ln(1 + r_i), r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / temperature),
    with G(y) = 2^y - 1 (computed as 2^(y - max y) - 2^-max y, the common factor cancels). Lists whose labels are
    all 0 get weight 0. Default temperature 0.1. ``lambda_weight`` is accepted and ignored, as in TF Ranking.

    >>> import tensorflow as tf
    >>> round(float(ApproxNDCGLoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    -0.65511
    >>> loss = ApproxNDCGLoss(ragged=True)
    >>> round(float(loss(tf.ragged.constant([[1.0, 0.0], [0.0, 1.0, 0.0]]),
    ...                  tf.ragged.constant([[0.6, 0.8], [0.5, 0.8, 0.4]]))), 5)
    -0.80537
    """

    def list_loss(self, labels, scores, mask):
        labels, scores, has_relevant = _prepare_approx_inputs(labels, scores, mask)
        gains = _safe_gain(labels)
        dcg = tf.reduce_sum(gains * ops.ln_inverse(ops.approx_ranks(scores)), axis=1, keepdims=True)
        ndcg = dcg * ops.inverse_max_dcg(labels, gain_fn=_safe_gain, rank_discount_fn=ops.ln_inverse)
        return -ndcg, has_relevant


@keras.saving.register_keras_serializable(package="tfrank")
class ApproxMRRLoss(_ApproxLoss):
    r"""ApproxMRR: minus the label-weighted mean reciprocal smooth rank, -sum_i y_i / r_i / sum_i y_i.

    r_i is the smooth rank of ``ApproxNDCGLoss``. Lists whose labels are all 0 get weight 0. Default temperature
    0.1. ``lambda_weight`` is accepted and ignored, as in TF Ranking.

    >>> round(float(ApproxMRRLoss()([[1.0, 0.0]], [[0.6, 0.8]])), 5)
    -0.53169
    """

    def list_loss(self, labels, scores, mask):
        labels, scores, has_relevant = _prepare_approx_inputs(labels, scores, mask)
        reciprocal_ranks = tf.reduce_sum(labels / ops.approx_ranks(scores), axis=1, keepdims=True)
        return -reciprocal_ranks / tf.reduce_sum(labels, axis=1, keepdims=True), has_relevant


@keras.saving.register_keras_serializable(package="tfrank")
class GumbelApproxNDCGLoss(GumbelSampling, ApproxNDCGLoss):
    r"""ApproxNDCG on scores perturbed with Gumbel noise (Bruch et al., 2020), averaged over ``sample_size`` draws.

    Each list is repeated ``sample_size`` times; draw k gets z = log softmax((s + g_k) / gumbel_temperature) with
    g_k ~ Gumbel(0, 1) on valid items, then ``ApproxNDCGLoss`` (with ``temperature``) is taken over the
    batch * sample_size lists, with labels and weights repeated.

    Difference from TF Ranking: TF Ranking draws the noise with stateful ``tf.random.uniform`` (random unless the
    global and op seeds are set). tfrank draws it with ``tf.random.stateless_uniform`` and seed ``[seed, 0]``
    (``seed=None`` means 0), so the loss is a deterministic function of its inputs: the same seed and shapes give
    the same noise on every call. Given the same noise the value equals TF Ranking's.

    >>> loss = GumbelApproxNDCGLoss(seed=1)
    >>> bool(loss([[1.0, 0.0]], [[0.6, 0.8]]) == loss([[1.0, 0.0]], [[0.6, 0.8]]))
    True
    """

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        lambda_weight: Optional[lambda_weights_lib.LambdaWeight] = None,
        temperature: float = 0.1,
        sample_size: int = 8,
        gumbel_temperature: float = 1.0,
        seed: Optional[int] = None,
        ragged: bool = False,
        **kwargs,
    ):
        super().__init__(reduction, name, lambda_weight, temperature, ragged, **kwargs)
        self._init_gumbel(sample_size, gumbel_temperature, seed)


@keras.saving.register_keras_serializable(package="tfrank")
class MixtureEMLoss(ItemVectorScores, ListwiseLoss):
    r"""Mixture EM loss (Yan et al., 2022): clicks from one of several models, scores ``[batch, list_size, models]``.

    Each model m has the per-list loss L_m = sum_i sigmoid cross-entropy(y_i, s_im) over valid items. E step (no
    gradient): p_m proportional to exp(-alpha (L_m - min_m L_m)). Loss = sum_m p_m L_m; lists whose labels sum to 0
    weigh 0. ``temperature`` and ``lambda_weight`` are kept in the config and ignored, as in TF Ranking.

    >>> round(float(MixtureEMLoss()([[1.0, 0.0]], [[[0.6, 0.9], [0.8, 0.2]]])), 5)
    1.31987
    """

    depth_name = "models"

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        lambda_weight: Optional[lambda_weights_lib.LambdaWeight] = None,
        temperature: float = 1.0,
        alpha: float = 1.0,
        ragged: bool = False,
        **kwargs,
    ):
        super().__init__(reduction, name, lambda_weight, temperature, ragged, **kwargs)
        self.alpha = float(alpha)

    def scale(self, scores):
        """The scores unchanged: TF Ranking's mixture EM loss never applies its temperature."""
        return scores

    def list_loss(self, labels, scores, mask):
        labels = tf.where(mask, labels, 0.0)
        labels_per_model = labels[:, :, tf.newaxis] * tf.ones_like(scores)
        losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels_per_model, logits=scores)
        losses = tf.where(mask[:, :, tf.newaxis], losses, 0.0)
        model_losses = tf.stop_gradient(tf.reduce_sum(losses, axis=1, keepdims=True))
        model_prob = tf.exp(-self.alpha * (model_losses - tf.reduce_min(model_losses, axis=2, keepdims=True)))
        model_prob /= tf.reduce_sum(model_prob, axis=2, keepdims=True)
        list_losses = tf.reduce_sum(losses * model_prob, axis=[1, 2])[:, tf.newaxis]
        has_click = tf.cast(tf.reduce_sum(labels, axis=1, keepdims=True) > 0.0, tf.float32)
        return list_losses, has_click

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self.alpha
        return config


@keras.saving.register_keras_serializable(package="tfrank")
class CoupledRankDistilLoss(ListwiseLoss):
    r"""Coupled-RankDistil loss (Reddi et al., 2021): the expected negative top-k Plackett-Luce log-likelihood of
    the scores over permutations sampled from the labels (the teacher).

    Each of ``sample_size`` permutations pi sorts the items by log softmax(y + g) with Gumbel noise g (padded items
    have teacher score log(1e-10)); the loss of a list is the mean over samples of
    -sum_{k < topk} (s_pi(k) - log(sum_{j >= k} exp(s_pi(j)) + k * 1e-10)), where padded items have score
    log(1e-10) and the k * 1e-10 are TF Ranking's masked denominator terms. ``topk=None`` (or a topk above the
    list size) means the whole list; lists whose labels sum to 0 weigh 0.

    Differences from TF Ranking, which always uses op seed 37 of the stateful global generator: the noise is the
    stateless draw of ``seed`` (default 37, like TF Ranking's), so the loss is a deterministic function of its
    inputs; ties among sampled teacher scores keep the input order (TF Ranking shuffles them).

    >>> loss = CoupledRankDistilLoss(topk=2, sample_size=1)
    >>> bool(loss([[0.0, 2.0, 1.0]], [[0.1, 0.7, 0.3]]) == loss([[0.0, 2.0, 1.0]], [[0.1, 0.7, 0.3]]))
    True
    """

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        ragged: bool = False,
        sample_size: int = 8,
        topk: Optional[int] = None,
        temperature: Optional[float] = 1.0,
        seed: Optional[int] = 37,
        **kwargs,
    ):
        super().__init__(reduction, name, None, 1.0 if temperature is None else temperature, ragged, **kwargs)
        self.sample_size = _arguments.check_count(sample_size, "sample_size", "CoupledRankDistilLoss")
        if topk is not None:
            _arguments.check_count(topk, "topk", "CoupledRankDistilLoss", "None (the whole list) or an int >= 1")
        self.topk = topk
        self.seed = seed

    def list_loss(self, labels, scores, mask):
        labels = tf.where(mask, labels, 0.0)
        teacher = tf.where(mask, labels, _LOG_EPSILON)
        student = tf.where(mask, scores, _LOG_EPSILON)
        batch_size, list_size = tf.unstack(tf.shape(labels))
        samples = self.sample_size
        noisy_teacher = teacher[:, tf.newaxis, :] + stateless_gumbel([batch_size, samples, list_size], self.seed)
        noisy_teacher = tf.math.log(tf.nn.softmax(noisy_teacher) + _EPSILON)
        order = tf.argsort(noisy_teacher, axis=2, direction="DESCENDING", stable=True)
        sorted_student = tf.gather(tf.repeat(student[:, tf.newaxis, :], samples, axis=1), order, batch_dims=2)
        topk = list_size if self.topk is None else tf.minimum(self.topk, list_size)
        # log(sum_{j >= k} exp(s_j) + k * epsilon): TF Ranking masks the first k terms to log(epsilon), not away.
        suffix = tf.math.cumulative_logsumexp(sorted_student, axis=2, reverse=True)[:, :, :topk]
        masked_terms = tf.math.log(tf.cast(tf.range(topk), tf.float32) * _EPSILON) * tf.ones_like(suffix)
        denominators = tf.reduce_logsumexp(tf.stack([suffix, masked_terms], axis=3), axis=3)
        log_likelihood = tf.reduce_sum(sorted_student[:, :, :topk] - denominators, axis=2)
        has_relevant = tf.cast(tf.reduce_sum(labels, axis=1, keepdims=True) > 0.0, tf.float32)
        return tf.reduce_mean(-log_likelihood, axis=1, keepdims=True), has_relevant

    def get_config(self):
        config = super().get_config()
        config.update({"sample_size": self.sample_size, "topk": self.topk, "seed": self.seed})
        return config

    @classmethod
    def _config_args(cls):
        return ("temperature",)
