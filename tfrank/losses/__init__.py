"""Ranking losses for Keras with TF Ranking 0.5.5's names, arguments and numbers, plus lambda weights.

Losses by name: ``get("pairwise_hinge", **kwargs)`` builds one (TF Ranking's ``RankingLossKey`` strings, with or
without the ``_loss`` suffix, plus ``mse`` = ``MeanSquaredLoss``); ``names()`` lists the short names. The registry
holds the losses of ``[batch, list_size]`` scores, the ones the training run can use: ``OrdinalLoss``,
``ClickEMLoss`` and ``MixtureEMLoss`` (a vector of scores per item) are built by class, or by TF Ranking's key
with ``tfrank.keras.losses.get``.

>>> import tfrank
>>> loss = tfrank.losses.get("pairwise_hinge", lambda_weight=tfrank.losses.NDCGLambdaWeight(topn=5))
>>> type(loss).__name__
'PairwiseHingeLoss'
"""

from tfrank.losses._base import RankingLoss
from tfrank.losses.lambda_weights import (
    DCGLambdaWeight,
    LabelDiffLambdaWeight,
    LambdaWeight,
    ListMLELambdaWeight,
    NDCGLambdaWeight,
    NDCGLambdaWeightV2,
    PrecisionLambdaWeight,
    YetiDCGLambdaWeight,
)
from tfrank.losses.listwise import (
    ApproxMRRLoss,
    ApproxNDCGLoss,
    CalibratedSoftmaxLoss,
    CoupledRankDistilLoss,
    GumbelApproxNDCGLoss,
    ListMLELoss,
    ListwiseLoss,
    MixtureEMLoss,
    SoftmaxLoss,
    UniqueSoftmaxLoss,
)
from tfrank.losses.pairwise import (
    PairwiseHingeLoss,
    PairwiseLogisticLoss,
    PairwiseLoss,
    PairwiseMSELoss,
    PairwiseSoftZeroOneLoss,
    YetiLogisticLoss,
)
from tfrank.losses.pointwise import ClickEMLoss, MeanSquaredLoss, OrdinalLoss, PointwiseLoss, SigmoidCrossEntropyLoss

__all__ = [
    "ApproxMRRLoss",
    "ApproxNDCGLoss",
    "CalibratedSoftmaxLoss",
    "ClickEMLoss",
    "CoupledRankDistilLoss",
    "DCGLambdaWeight",
    "GumbelApproxNDCGLoss",
    "LabelDiffLambdaWeight",
    "LambdaWeight",
    "ListMLELambdaWeight",
    "ListMLELoss",
    "ListwiseLoss",
    "MeanSquaredLoss",
    "MixtureEMLoss",
    "NDCGLambdaWeight",
    "NDCGLambdaWeightV2",
    "OrdinalLoss",
    "PairwiseHingeLoss",
    "PairwiseLogisticLoss",
    "PairwiseLoss",
    "PairwiseMSELoss",
    "PairwiseSoftZeroOneLoss",
    "PointwiseLoss",
    "PrecisionLambdaWeight",
    "RankingLoss",
    "SigmoidCrossEntropyLoss",
    "SoftmaxLoss",
    "UniqueSoftmaxLoss",
    "YetiDCGLambdaWeight",
    "YetiLogisticLoss",
    "get",
    "names",
]

_LOSSES = {
    "approx_mrr": ApproxMRRLoss,
    "approx_ndcg": ApproxNDCGLoss,
    "calibrated_softmax": CalibratedSoftmaxLoss,
    "coupled_rankdistil": CoupledRankDistilLoss,
    "gumbel_approx_ndcg": GumbelApproxNDCGLoss,
    "list_mle": ListMLELoss,
    "mean_squared": MeanSquaredLoss,
    "mse": MeanSquaredLoss,
    "pairwise_hinge": PairwiseHingeLoss,
    "pairwise_logistic": PairwiseLogisticLoss,
    "pairwise_mse": PairwiseMSELoss,
    "pairwise_soft_zero_one": PairwiseSoftZeroOneLoss,
    "sigmoid_cross_entropy": SigmoidCrossEntropyLoss,
    "softmax": SoftmaxLoss,
    "unique_softmax": UniqueSoftmaxLoss,
    "yeti_logistic": YetiLogisticLoss,
}


def names() -> list:
    """The loss names ``get`` accepts, short forms, sorted; each also works with a ``_loss`` suffix."""
    return sorted(_LOSSES)


def get(name: str, **kwargs) -> RankingLoss:
    """A new instance of the loss called ``name``, built with ``kwargs`` (``reduction``, ``lambda_weight``, ...).

    >>> get("softmax_loss", temperature=2.0).temperature
    2.0
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if isinstance(key, str) and key not in _LOSSES and key.endswith("_loss"):
        key = key[: -len("_loss")]
    if key not in _LOSSES:
        raise ValueError(f"unknown loss name {name!r}; valid names: {', '.join(names())} (a '_loss' suffix is allowed)")
    return _LOSSES[key](**kwargs)
