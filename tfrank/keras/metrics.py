"""TF Ranking's ``tfr.keras.metrics`` names for tfrank's metrics (aliases, no second definition).

>>> import tfrank as tfr
>>> metric = tfr.keras.metrics.get(tfr.keras.metrics.RankingMetricKey.NDCG, topn=5)
>>> type(metric).__name__, metric.topn
('NDCGMetric', 5)
"""

from typing import Any, List, Optional

from tfrank.metrics import (
    AlphaDCGMetric,
    ARPMetric,
    DCGMetric,
    HitsMetric,
    MeanAveragePrecisionMetric,
    MRRMetric,
    NDCGMetric,
    OPAMetric,
    PrecisionIAMetric,
    PrecisionMetric,
    RankingMetric,
    RecallMetric,
)

__all__ = [
    "ARPMetric",
    "AlphaDCGMetric",
    "DCGMetric",
    "HitsMetric",
    "MRRMetric",
    "MeanAveragePrecisionMetric",
    "NDCGMetric",
    "OPAMetric",
    "PrecisionIAMetric",
    "PrecisionMetric",
    "RankingMetricKey",
    "RecallMetric",
    "default_keras_metrics",
    "get",
]


class RankingMetricKey:
    """TF Ranking's metric key strings, the names ``get`` takes."""

    MRR = "mrr"
    ARP = "arp"
    NDCG = "ndcg"
    DCG = "dcg"
    PRECISION = "precision"
    MAP = "map"
    PRECISION_IA = "precision_ia"
    ORDERED_PAIR_ACCURACY = "ordered_pair_accuracy"
    ALPHA_DCG = "alpha_dcg"
    HITS = "hits"


_METRICS = {
    RankingMetricKey.MRR: MRRMetric,
    RankingMetricKey.ARP: ARPMetric,
    RankingMetricKey.PRECISION: PrecisionMetric,
    RankingMetricKey.MAP: MeanAveragePrecisionMetric,
    RankingMetricKey.NDCG: NDCGMetric,
    RankingMetricKey.DCG: DCGMetric,
    RankingMetricKey.ORDERED_PAIR_ACCURACY: OPAMetric,
    RankingMetricKey.HITS: HitsMetric,
    # TF Ranking's get() has keys for these two but no entries: tfrank builds them.
    RankingMetricKey.PRECISION_IA: PrecisionIAMetric,
    RankingMetricKey.ALPHA_DCG: AlphaDCGMetric,
}


def get(key: str, name: Optional[str] = None, dtype: Any = None, topn: Optional[int] = None,
        **kwargs) -> RankingMetric:
    """TF Ranking's metric factory: a new metric for the ``RankingMetricKey`` string ``key``.

    ``topn`` is passed on only when truthy (as in TF Ranking, ``topn=0`` means none); ``kwargs`` go to the metric's
    constructor. Exact keys only (``tfrank.metrics.get`` also takes ``"ndcg@5"``).

    >>> get("mrr", name="mrr_at_2", topn=2).name
    'mrr_at_2'
    """
    if not isinstance(key, str):
        raise ValueError(f"Input `key` needs to be string: got {key!r}, use a RankingMetricKey string such as 'ndcg'")
    if key not in _METRICS:
        raise ValueError(f"Unsupported metric: {key}; use one of the RankingMetricKey strings: {', '.join(_METRICS)}")
    metric_kwargs = {"name": name, "dtype": dtype, **({"topn": topn} if topn else {}), **kwargs}
    if key == RankingMetricKey.ALPHA_DCG and name is None:
        metric_kwargs.pop("name")  # keep AlphaDCGMetric's own default name
    return _METRICS[key](**metric_kwargs)


def default_keras_metrics(**kwargs) -> List[RankingMetric]:
    """TF Ranking's default metrics: NDCG@1, @3, @5, @10, ARP, OPA, MRR, precision, MAP, DCG and NDCG, named
    ``metric/ndcg_1`` ... ``metric/ndcg``; ``kwargs`` (e.g. ``ragged=True``) go to each.

    >>> [metric.name for metric in default_keras_metrics()][:2]
    ['metric/ndcg_1', 'metric/ndcg_3']
    """
    specs = [dict(key="ndcg", topn=topn, name=f"metric/ndcg_{topn}") for topn in (1, 3, 5, 10)]
    specs += [dict(key=key, name=f"metric/{key}")
              for key in ("arp", "ordered_pair_accuracy", "mrr", "precision", "map", "dcg", "ndcg")]
    return [get(**spec, **kwargs) for spec in specs]
