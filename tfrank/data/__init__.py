"""MovieLens data for ranking: sources, a deterministic split, per-user list sampling, batching, synthetic data.

ratings = tfrank.data.load_ratings("100k")            # or source="path/to/ml-100k", or "tfds"
train, validation, test = tfrank.data.split(ratings)
lists = tfrank.data.sample_lists(train, list_size=5, num_lists_per_user=50, seed=0)
batches = tfrank.data.batch_lists(lists, batch_size=32)

lists = tfrank.data.stream_lists(ratings, sorted_by_user=False)   # the same lists, as a tf.data pipeline

movies = tfrank.data.load_movie_features("100k")       # side features (tfrank.data.features), numpy columns by id
history = tfrank.data.history_features(train, movies)  # per-user and per-movie statistics of the training split

TF Ranking's formats (tfrank.data.elwc, tfrank.data.libsvm): read_elwc / parse_elwc / write_elwc, read_libsvm.
"""

from tfrank.data import synthetic
from tfrank.data.elwc import parse_elwc, read_elwc, write_elwc
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
from tfrank.data.libsvm import read_libsvm
from tfrank.data.lists import batch_lists, from_memory, sample_lists, split
from tfrank.data.movielens import GENRES, VARIANTS, MovieLensUnavailableError, load_movies, load_ratings
from tfrank.data.streaming import stream_lists, stream_lists_sharded, stream_ratings, stream_split

__all__ = [
    "AGE_BUCKETS_1M",
    "GENRES",
    "MOVIE_HISTORY_KEYS",
    "OCCUPATIONS_1M",
    "USER_HISTORY_KEYS",
    "VARIANTS",
    "AlignedFeatures",
    "MovieLensUnavailableError",
    "align_rows",
    "batch_lists",
    "from_memory",
    "history_features",
    "load_movie_features",
    "load_movies",
    "load_ratings",
    "load_user_features",
    "parse_elwc",
    "read_elwc",
    "read_libsvm",
    "sample_lists",
    "split",
    "stream_lists",
    "stream_lists_sharded",
    "stream_ratings",
    "stream_split",
    "synthetic",
    "write_elwc",
]
