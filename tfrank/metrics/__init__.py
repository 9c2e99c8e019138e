"""Ranking metrics as Keras metrics, with the numbers of TF Ranking 0.5.5's ``tfr.keras.metrics``.

Each metric takes ``name``, ``topn`` (except ``ARPMetric`` and ``OPAMetric``) and ``ragged``; ``NDCGMetric`` and
``DCGMetric`` also take ``gain_fn`` and ``rank_discount_fn``. ``AlphaDCGMetric`` and ``PrecisionIAMetric`` take
subtopic labels ``[batch, list_size, subtopics]`` (``tfrank/metrics/diversity.py``). ``get("ndcg@5")`` builds one
by name.
Semantics and the deliberate differences from TF Ranking (ties by input order; lists without valid items
ignored; NaN or infinite scores on counted items give NaN) are described in ``tfrank/metrics/_base.py``.
"""

from tfrank.metrics._base import RankedLists, RankingMetric, broadcast_sample_weight, per_list_weights
from tfrank.metrics.diversity import AlphaDCGMetric, PrecisionIAMetric
from tfrank.metrics.ranking import (
    ARPMetric,
    DCGMetric,
    HitsMetric,
    MeanAveragePrecisionMetric,
    MRRMetric,
    NDCGMetric,
    OPAMetric,
    PrecisionMetric,
    RecallMetric,
)
from tfrank.metrics.registry import get, names

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
    "RankedLists",
    "RankingMetric",
    "RecallMetric",
    "broadcast_sample_weight",
    "get",
    "names",
    "per_list_weights",
]
