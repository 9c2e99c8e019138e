"""Metrics by name: ``get("ndcg@5")`` -> ``NDCGMetric(topn=5, name="ndcg@5")``; ``names()`` lists the base names.

Names are TF Ranking's ``RankingMetricKey`` strings; ``@k`` sets ``topn``. ``opa`` is an alias of
``ordered_pair_accuracy``. The registry holds the metrics of ``[batch, list_size]`` labels, the ones the
training run can use; ``AlphaDCGMetric`` and ``PrecisionIAMetric`` (subtopic labels) are built by class, or by TF
Ranking's key with ``tfrank.keras.metrics.get``.
"""

from tfrank.metrics._base import RankingMetric
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

_METRICS = {
    "arp": ARPMetric,
    "dcg": DCGMetric,
    "hits": HitsMetric,
    "map": MeanAveragePrecisionMetric,
    "mrr": MRRMetric,
    "ndcg": NDCGMetric,
    "ordered_pair_accuracy": OPAMetric,
    "precision": PrecisionMetric,
    "recall": RecallMetric,
}
_ALIASES = {"opa": "ordered_pair_accuracy"}


def names() -> list[str]:
    """The metric base names ``get`` accepts, sorted (the alias ``opa`` is accepted too but not listed)."""
    return sorted(_METRICS)


def _valid_names() -> str:
    return ", ".join(names()) + " (alias: " + ", ".join(sorted(_ALIASES)) + "); add '@k' for a cut-off, e.g. 'ndcg@5'"


def get(name: str | None = None, /, **kwargs) -> RankingMetric:
    """The metric called ``name`` (``"mrr"``, ``"ndcg@5"``, ...), named ``name`` unless ``kwargs`` has ``name``.

    Other ``kwargs`` (``ragged=True``, ``gain_fn=...``) go to the metric's constructor; ``get(name="mrr")`` works
    too.

    >>> from tfrank import metrics
    >>> metric = metrics.get("ndcg@5", ragged=True)
    >>> type(metric).__name__, metric.name, metric.topn, metric.ragged
    ('NDCGMetric', 'ndcg@5', 5, True)
    """
    if name is None:
        name = kwargs.get("name")
    name = name if isinstance(name, str) else repr(name)
    base, has_cutoff, cutoff = name.strip().partition("@")
    base = _ALIASES.get(base.lower(), base.lower())
    if base not in _METRICS:
        raise ValueError(f"unknown metric name {name!r}; valid names: {_valid_names()}")
    metric_class = _METRICS[base]
    kwargs.setdefault("name", name)
    if has_cutoff:
        if not (cutoff.isascii() and cutoff.isdigit()) or int(cutoff) < 1:
            raise ValueError(f"metric name {name!r}: the cut-off after '@' must be a positive integer, e.g. '{base}@5'")
        if not metric_class.takes_topn:
            raise ValueError(f"metric name {name!r}: {base} ranks whole lists and takes no '@k' cut-off")
        if kwargs.get("topn") is not None:
            raise ValueError(f"metric name {name!r} sets topn={cutoff}; do not pass topn={kwargs['topn']!r} as well")
        kwargs["topn"] = int(cutoff)
    return metric_class(**kwargs)
