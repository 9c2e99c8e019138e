"""MovieLens data for ranking: sources, a deterministic split, per-user list sampling, batching, synthetic data.

ratings = tfrank.data.load_ratings("100k")            # or source="path/to/ml-100k", or "tfds"
train, validation, test = tfrank.data.split(ratings)
lists = tfrank.data.sample_lists(train, list_size=5, num_lists_per_user=50, seed=0)
batches = tfrank.data.batch_lists(lists, batch_size=32)

lists = tfrank.data.stream_lists(ratings, sorted_by_user=False)   # the same lists, as a tf.data pipeline
"""

from tfrank.data import synthetic
from tfrank.data.features import (
    AGE_BUCKETS_1M,
    MOVIE_HISTORY_KEYS,
    OCCUPATIONS_1M,
    USER_HISTORY_KEYS,
    AlignedFeatures,
    align_rows,
    history_features,
    load_movie_features,
    load_user_features,
)
from tfrank.data.lists import batch_lists, from_memory, sample_lists, split
from tfrank.data.movielens import GENRES, VARIANTS, MovieLensUnavailableError, load_movies, load_ratings
from tfrank.data.streaming import stream_lists, stream_lists_sharded, stream_ratings, stream_split

__all__ = [
    "AGE_BUCKETS_1M",
    "GENRES",
    "MOVIE_HISTORY_KEYS",
    "OCCUPATIONS_1M",
    "USER_HISTORY_KEYS",
    "AlignedFeatures",
    "align_rows",
    "history_features",
    "load_movie_features",
    "load_user_features",
    "VARIANTS",
    "MovieLensUnavailableError",
    "batch_lists",
    "from_memory",
    "load_movies",
    "load_ratings",
    "sample_lists",
    "split",
    "stream_lists",
    "stream_lists_sharded",
    "stream_ratings",
    "stream_split",
    "synthetic",
]
