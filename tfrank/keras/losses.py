"""TF Ranking's ``tfr.keras.losses`` names for tfrank's losses and lambda weights (aliases, no second definition).

>>> import tfrank as tfr
>>> loss = tfr.keras.losses.get(tfr.keras.losses.RankingLossKey.SOFTMAX_LOSS, name="softmax")
>>> type(loss).__name__, loss.name
('SoftmaxLoss', 'softmax')
"""

from typing import List, Optional

from tfrank import losses as _losses
from tfrank.losses import (
    ApproxMRRLoss,
    ApproxNDCGLoss,
    CalibratedSoftmaxLoss,
    ClickEMLoss,
    CoupledRankDistilLoss,
    DCGLambdaWeight,
    GumbelApproxNDCGLoss,
    LabelDiffLambdaWeight,
    ListMLELambdaWeight,
    ListMLELoss,
    MeanSquaredLoss,
    MixtureEMLoss,
    NDCGLambdaWeight,
    NDCGLambdaWeightV2,
    OrdinalLoss,
    PairwiseHingeLoss,
    PairwiseLogisticLoss,
    PairwiseMSELoss,
    PairwiseSoftZeroOneLoss,
    PrecisionLambdaWeight,
    SigmoidCrossEntropyLoss,
    SoftmaxLoss,
    UniqueSoftmaxLoss,
    YetiDCGLambdaWeight,
    YetiLogisticLoss,
)

__all__ = [
    "ApproxMRRLoss",
    "ApproxNDCGLoss",
    "CalibratedSoftmaxLoss",
    "ClickEMLoss",
    "CoupledRankDistilLoss",
    "DCGLambdaWeight",
    "GumbelApproxNDCGLoss",
    "LabelDiffLambdaWeight",
    "ListMLELambdaWeight",
    "ListMLELoss",
    "MeanSquaredLoss",
    "MixtureEMLoss",
    "NDCGLambdaWeight",
    "NDCGLambdaWeightV2",
    "OrdinalLoss",
    "PairwiseHingeLoss",
    "PairwiseLogisticLoss",
    "PairwiseMSELoss",
    "PairwiseSoftZeroOneLoss",
    "PrecisionLambdaWeight",
    "RankingLossKey",
    "SigmoidCrossEntropyLoss",
    "SoftmaxLoss",
    "UniqueSoftmaxLoss",
    "YetiDCGLambdaWeight",
    "YetiLogisticLoss",
    "get",
]


class RankingLossKey:
    """TF Ranking's loss key strings, the names ``get`` takes."""

    PAIRWISE_HINGE_LOSS = "pairwise_hinge_loss"
    PAIRWISE_LOGISTIC_LOSS = "pairwise_logistic_loss"
    PAIRWISE_SOFT_ZERO_ONE_LOSS = "pairwise_soft_zero_one_loss"
    PAIRWISE_MSE_LOSS = "pairwise_mse_loss"
    YETI_LOGISTIC_LOSS = "yeti_logistic_loss"
    SOFTMAX_LOSS = "softmax_loss"
    CALIBRATED_SOFTMAX_LOSS = "calibrated_softmax_loss"
    UNIQUE_SOFTMAX_LOSS = "unique_softmax_loss"
    SIGMOID_CROSS_ENTROPY_LOSS = "sigmoid_cross_entropy_loss"
    MEAN_SQUARED_LOSS = "mean_squared_loss"
    ORDINAL_LOSS = "ordinal_loss"
    LIST_MLE_LOSS = "list_mle_loss"
    APPROX_NDCG_LOSS = "approx_ndcg_loss"
    APPROX_MRR_LOSS = "approx_mrr_loss"
    GUMBEL_APPROX_NDCG_LOSS = "gumbel_approx_ndcg_loss"
    COUPLED_RANKDISTIL_LOSS = "coupled_rankdistil_loss"

    @classmethod
    def all_keys(cls) -> List[str]:
        """Every key, in TF Ranking's order."""
        return [value for key, value in vars(cls).items() if key.isupper()]


# As in TF Ranking, only these losses are given the `lambda_weight` argument of `get`.
_WITH_LAMBDA_WEIGHT = {
    RankingLossKey.LIST_MLE_LOSS: ListMLELoss,
    RankingLossKey.PAIRWISE_HINGE_LOSS: PairwiseHingeLoss,
    RankingLossKey.PAIRWISE_LOGISTIC_LOSS: PairwiseLogisticLoss,
    RankingLossKey.PAIRWISE_SOFT_ZERO_ONE_LOSS: PairwiseSoftZeroOneLoss,
    RankingLossKey.PAIRWISE_MSE_LOSS: PairwiseMSELoss,
    RankingLossKey.YETI_LOGISTIC_LOSS: YetiLogisticLoss,
    RankingLossKey.SOFTMAX_LOSS: SoftmaxLoss,
    RankingLossKey.CALIBRATED_SOFTMAX_LOSS: CalibratedSoftmaxLoss,
    RankingLossKey.UNIQUE_SOFTMAX_LOSS: UniqueSoftmaxLoss,
}
_WITHOUT_LAMBDA_WEIGHT = {
    RankingLossKey.SIGMOID_CROSS_ENTROPY_LOSS: SigmoidCrossEntropyLoss,
    RankingLossKey.MEAN_SQUARED_LOSS: MeanSquaredLoss,
    RankingLossKey.ORDINAL_LOSS: OrdinalLoss,
    RankingLossKey.APPROX_NDCG_LOSS: ApproxNDCGLoss,
    RankingLossKey.APPROX_MRR_LOSS: ApproxMRRLoss,
    RankingLossKey.GUMBEL_APPROX_NDCG_LOSS: GumbelApproxNDCGLoss,
    RankingLossKey.COUPLED_RANKDISTIL_LOSS: CoupledRankDistilLoss,
}


def get(
    loss: str,
    reduction: Optional[str] = "auto",
    lambda_weight: Optional[_losses.LambdaWeight] = None,
    name: Optional[str] = None,
    **kwargs,
) -> _losses.RankingLoss:
    """TF Ranking's loss factory: a new loss for the ``RankingLossKey`` string ``loss``.

    ``reduction`` and ``name`` go to every loss, ``lambda_weight`` only to the losses that take one (the others
    ignore it, as in TF Ranking), ``kwargs`` to the loss's constructor. Exact keys only (``tfrank.losses.get``
    also takes short names).

    >>> get("pairwise_hinge_loss", lambda_weight=NDCGLambdaWeight(topn=3)).lambda_weight.topn
    3
    """
    loss_kwargs = {"reduction": reduction, "name": name, **kwargs}
    if loss in _WITHOUT_LAMBDA_WEIGHT:
        return _WITHOUT_LAMBDA_WEIGHT[loss](**loss_kwargs)
    if loss in _WITH_LAMBDA_WEIGHT:
        return _WITH_LAMBDA_WEIGHT[loss](lambda_weight=lambda_weight, **loss_kwargs)
    raise ValueError(f"unsupported loss: {loss}; use one of the RankingLossKey strings: "
                     f"{', '.join(RankingLossKey.all_keys())}")
