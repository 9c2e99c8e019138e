"""MovieLens side features and per-user history features, as numpy columns that a model turns into lookup tables.

movies = tfrank.data.load_movie_features("100k")                 # genres multi-hot, year, title
users = tfrank.data.load_user_features("100k")                   # age, gender, occupation, zip (None for 20m/25m)
train, validation, test = tfrank.data.split(tfrank.data.load_ratings("100k"))
history = tfrank.data.history_features(train, movies)           # from the training ratings only
rows = tfrank.data.align_rows(model.movie_vocabulary, movies, "movie_id")   # row i + 1 = vocabulary[i]
print(rows.num_missing, "movies of the vocabulary have no features; they get the default row")

Every function returns plain numpy arrays keyed by feature name, one row per id (the id column included), so the
features of one source can be joined by id and aligned to the rows of :class:`tfrank.models.RankingModel`'s
embeddings with :func:`align_rows`. Sources resolve as in :func:`tfrank.data.load_ratings` (``"tfds"``, a local
GroupLens folder or zip, or ``None`` for ``TFRANK_MOVIELENS_DIR`` else TFDS), and errors keep its quality: a
malformed line or a repeated id raises ``tf.errors.InvalidArgumentError`` naming the file and line(s) (one line of
message), an unknown genre name raises ``ValueError`` naming the genre, the file and the line.
:func:`tfrank.data.synthetic.movie_features` and :func:`tfrank.data.synthetic.user_features` give the same schema for
synthetic ratings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfrank.data import lists, movielens
from tfrank.data._tfdata import ROWS_PER_BATCH, one_line
from tfrank.data.movielens import AGE_BUCKETS_1M, GENRES, OCCUPATIONS_1M

__all__ = [
    "AGE_BUCKETS_1M", "MOVIE_HISTORY_KEYS", "OCCUPATIONS_1M", "USER_HISTORY_KEYS", "AlignedFeatures", "align_rows",
    "history_features", "load_movie_features", "load_user_features", "tfds_user_features",
]  # fmt: skip

# The release year in a title: "Toy Story (1995)"; series in ml-25m end in a range, "(1994-1998)" or "(2007-)".
_TITLE_YEAR = re.compile(r"\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")
# u.item's release date: "01-Jan-1995".
_DATE_YEAR = re.compile(r"(\d{4})\s*$")

# The per-user and the per-movie columns of :func:`history_features`, for :func:`align_rows`'s ``keys``.
USER_HISTORY_KEYS = ("num_ratings", "mean_rating", "genre_affinity")
MOVIE_HISTORY_KEYS = ("movie_num_ratings", "movie_mean_rating")
DEFAULT_SHRINKAGE = 5.0
_AFFINITY_BASELINES = ("user_mean", "movie_mean")


def load_movie_features(variant: str = "100k", source: str | os.PathLike | None = None,
                        data_dir: str | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """The movies of a MovieLens variant as feature columns, in the order of the movies file.

    Returns:
      ``{"movie_id": int64 [n], "genres": float32 [n, len(GENRES)], "year": int64 [n], "title": object [n]}``:
      ``genres`` is multi-hot over :data:`tfrank.data.GENRES` (one vocabulary for every variant and source: 100k's
      ``Children's`` and ``unknown`` are spelt ``Children`` and ``Unknown``); ``year`` is the release year in the
      title ("Toy Story (1995)"), else the year of u.item's release date, else 0 (unknown); ``title`` holds UTF-8
      bytes. The title's year comes first because u.item's date is often a later US re-release (Return of the Jedi
      (1983) is dated 1997) and TFDS has no date, so every source gives the same year.

    Args: as :func:`tfrank.data.load_movies`.

    Raises:
      ValueError: a genre name outside :data:`GENRES` (the genre, file and line named); and as
        :func:`tfrank.data.load_movies`.
      tf.errors.InvalidArgumentError: a malformed line, or a movie id repeated (file and both lines named).
    """
    movielens._check_variant(variant)
    where = movielens._resolve_source(source)
    if where == "tfds":
        dataset = movielens.map_tfds_movies(movielens._load_tfds(f"movielens/{variant}-movies", data_dir))
        movies = _concatenated(dataset.ragged_batch(ROWS_PER_BATCH))
        origin = f"TFDS movielens/{variant}-movies"
        line_numbers = None
        release_dates = None
    else:
        path = movielens._local_file(where, variant, movielens._LAYOUTS[variant].movies)
        movies = _single_batch(movielens._movie_batches(path, variant))
        origin = path
        line_numbers = None if movies is None else movies["line_number"].numpy()
        release_dates = None if movies is None else _as_text(movies["release_date"].numpy())
    if movies is None:  # a file without a line
        return {"movie_id": np.zeros([0], np.int64), "genres": np.zeros([0, len(GENRES)], np.float32),
                "year": np.zeros([0], np.int64), "title": np.zeros([0], object)}  # fmt: skip
    genres = movies["movie_genres"]
    titles = movies["movie_title"].numpy()
    years = np.array([_year(title, None if release_dates is None else release_dates[i])
                      for i, title in enumerate(_as_text(titles))], dtype=np.int64)  # fmt: skip
    return {
        "movie_id": movies["movie_id"].numpy().astype(np.int64),
        "genres": _multi_hot(genres.values.numpy(), genres.value_rowids().numpy(), len(titles), origin, line_numbers),
        "year": years,
        "title": titles.astype(object),
    }


def load_user_features(variant: str = "100k", source: str | os.PathLike | None = None,
                       data_dir: str | None = None) -> dict[str, np.ndarray] | None:  # fmt: skip
    """The users of a MovieLens variant as feature columns, or None for 20m and 25m (they have no user file).

    Returns:
      ``{"user_id": int64 [n], "age": int64 [n], "gender": object [n], "occupation": object [n], "zip": object [n]}``
      in the order of the users file (by user id from TFDS), strings as bytes. ``age`` is in years for 100k; for 1m
      it is the code of users.dat's age bucket, the bucket's lowest age (:data:`tfrank.data.AGE_BUCKETS_1M`: 1
      means under 18, 18 means 18-24, ..., 56 means 56 and over). ``gender`` is ``b"M"`` or ``b"F"``.
      ``occupation`` is u.user's word for 100k (``b"technician"``) and, for 1m, the ml-1m README's name of
      users.dat's code (:data:`tfrank.data.OCCUPATIONS_1M`, code 0 is ``b"other"``); from TFDS it is TFDS's
      ``user_occupation_text``. ``zip`` is the text of the file (some are not US zip codes: ``b"T8H1N"``).

    Args: as :func:`tfrank.data.load_movies`; TFDS has the users in ``movielens/<variant>-ratings``.

    Raises:
      tf.errors.InvalidArgumentError: a malformed line (gender not M/F, a 1m age or occupation code outside the
        README's list, a missing field) or a user id repeated (file and both lines named); and as
        :func:`tfrank.data.load_ratings`.
    """
    movielens._check_variant(variant)
    if movielens._LAYOUTS[variant].users is None:
        return None
    where = movielens._resolve_source(source)
    if where == "tfds":
        return tfds_user_features(movielens._load_tfds(f"movielens/{variant}-ratings", data_dir))
    path = movielens._local_file(where, variant, movielens._LAYOUTS[variant].users)
    users = _single_batch(movielens._user_batches(path, variant))
    if users is None:
        return {"user_id": np.zeros([0], np.int64), "age": np.zeros([0], np.int64),
                **{key: np.zeros([0], object) for key in ("gender", "occupation", "zip")}}  # fmt: skip
    return {
        "user_id": users["user_id"].numpy(),
        "age": users["age"].numpy(),
        **{key: users[key].numpy().astype(object) for key in ("gender", "occupation", "zip")},
    }


def tfds_user_features(ratings: tf.data.Dataset) -> dict[str, np.ndarray]:
    """User features from a TFDS ``movielens/*-ratings`` dataset, which repeats them on every rating.

    Each user's features come from their first rating; users are sorted by id. ``age`` is TFDS's ``raw_user_age``
    when it has one (100k), else its ``bucketized_user_age`` (1m: the bucket code, as in users.dat); TFDS's
    boolean ``user_gender`` (True for male) becomes ``b"M"`` / ``b"F"``.
    """
    spec = ratings.element_spec
    age_key = "raw_user_age" if "raw_user_age" in spec else "bucketized_user_age"
    keys = ("user_id", age_key, "user_gender", "user_occupation_text", "user_zip_code")
    missing = [key for key in keys if key not in spec]
    if missing:
        raise ValueError(f"TFDS ratings have no {missing}: they carry user features only for 100k and 1m")
    columns = _concatenated(ratings.map(lambda x: {key: x[key] for key in keys}).batch(ROWS_PER_BATCH))
    if columns is None:
        return {"user_id": np.zeros([0], np.int64), "age": np.zeros([0], np.int64),
                **{key: np.zeros([0], object) for key in ("gender", "occupation", "zip")}}  # fmt: skip
    user_ids = np.array([int(user) for user in columns["user_id"].numpy()], dtype=np.int64)
    user_ids, first = np.unique(user_ids, return_index=True)
    return {
        "user_id": user_ids,
        "age": np.rint(columns[age_key].numpy()[first]).astype(np.int64),
        "gender": np.where(columns["user_gender"].numpy()[first], b"M", b"F").astype(object),
        "occupation": columns["user_occupation_text"].numpy()[first].astype(object),
        "zip": columns["user_zip_code"].numpy()[first].astype(object),
    }


def history_features(train_ratings: tf.data.Dataset | Mapping[str, Any], movie_features: Mapping[str, np.ndarray],
                     shrinkage: float = DEFAULT_SHRINKAGE, affinity_baseline: str = "user_mean"
                     ) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-user and per-movie statistics of ``train_ratings``, and of nothing else.

    Pass the training split only: every number here is computed from the ratings passed in, so validation and test
    ratings stay out of the features (no leakage). A (user, movie) pair rated more than once counts once, with the
    rating :func:`tfrank.data.sample_lists` keeps (the latest). Ratings are in stars (``user_rating``).

    Returns, per user (``user_id`` sorted, the users of ``train_ratings``; :data:`USER_HISTORY_KEYS`):
      ``user_id`` int64 [U]; ``num_ratings`` int64 [U]; ``mean_rating`` float32 [U], the user's mean stars;
      ``genre_affinity`` float32 [U, len(GENRES)]: for genre g, ``sum(stars - mean_rating) / (count + shrinkage)``
      over the user's ratings of movies of genre g, the user's mean in g minus their overall mean, shrunk toward 0
      when the user rated few movies of g (0 for a genre they never rated); with
      ``affinity_baseline="movie_mean"``, ``sum(stars - movie_mean_rating) / (count + shrinkage)`` instead: how
      much more than the movie's (shrunk) mean the user rates the genre's movies, which separates a user's taste
      from the genre's movies simply being better liked;
    per movie (``movie_id`` sorted, the movies of ``train_ratings``; :data:`MOVIE_HISTORY_KEYS`):
      ``movie_id`` int64 [M]; ``movie_num_ratings`` int64 [M]; ``movie_mean_rating`` float32 [M],
      ``(sum of stars + shrinkage * global_mean_rating) / (count + shrinkage)``, shrunk toward the global mean;
    and ``global_mean_rating`` float32 [], the mean of all the ratings (the default for movies never rated).

    Args:
      train_ratings: the training ratings, as :func:`tfrank.data.split` gives them (one per element or in
        batches), or a mapping of columns ``user_id``, ``movie_id``, ``user_rating`` (optionally ``timestamp``).
      movie_features: :func:`load_movie_features` (or :func:`tfrank.data.synthetic.movie_features`): its
        ``movie_id`` and ``genres``.
      shrinkage: pseudo-count >= 0 pulling genre affinities toward 0 and movie means toward the global mean.
      affinity_baseline: what a rating is compared with in ``genre_affinity``: ``"user_mean"`` (the user's mean
        rating) or ``"movie_mean"`` (the rated movie's ``movie_mean_rating``).

    Raises:
      ValueError: ``shrinkage`` < 0, an unknown ``affinity_baseline``, no ratings, or a rated movie that
        ``movie_features`` lacks (its genres are unknown: the movie features are of another variant).
    """
    if not shrinkage >= 0:
        raise ValueError(f"shrinkage={shrinkage}: must be >= 0 (0 for plain means)")
    if affinity_baseline not in _AFFINITY_BASELINES:
        raise ValueError(f"affinity_baseline={affinity_baseline!r}: must be one of {', '.join(_AFFINITY_BASELINES)}")
    users, movies, stars = _train_columns(train_ratings)
    if users.size == 0:
        raise ValueError("train_ratings is empty: history features need the training ratings")
    stars = stars.astype(np.float64)
    genre_rows = _rows_of(movies, movie_features)
    genres = np.asarray(movie_features["genres"], dtype=np.float64)

    global_mean = stars.mean()
    movie_ids, movie_index = np.unique(movies, return_inverse=True)
    movie_counts = np.bincount(movie_index)
    movie_mean = (np.bincount(movie_index, weights=stars) + shrinkage * global_mean) / (movie_counts + shrinkage)

    user_ids, user_index = np.unique(users, return_inverse=True)
    num_ratings = np.bincount(user_index)
    mean_rating = np.bincount(user_index, weights=stars) / num_ratings
    baseline = mean_rating[user_index] if affinity_baseline == "user_mean" else movie_mean[movie_index]
    deviation = stars - baseline
    # One genre at a time: a [ratings, genres] matrix would not fit in memory at 25M ratings.
    affinity = np.zeros([len(user_ids), genres.shape[1]], np.float32)
    for genre in range(genres.shape[1]):
        in_genre = genres[genre_rows, genre]
        sums = np.bincount(user_index, weights=deviation * in_genre, minlength=len(user_ids))
        counts = np.bincount(user_index, weights=in_genre, minlength=len(user_ids))
        affinity[:, genre] = sums / np.maximum(counts + shrinkage, 1e-12)  # count 0 gives sum 0
    return {
        "user_id": user_ids,
        "num_ratings": num_ratings.astype(np.int64),
        "mean_rating": mean_rating.astype(np.float32),
        "genre_affinity": affinity,
        "movie_id": movie_ids,
        "movie_num_ratings": movie_counts.astype(np.int64),
        "movie_mean_rating": movie_mean.astype(np.float32),
        "global_mean_rating": np.float32(global_mean),
    }


class AlignedFeatures(dict):
    """The features of :func:`align_rows`, row ``i + 1`` for ``vocabulary[i]``, with the ids that got the default.

    Attributes:
      missing_ids: int64 [k], the vocabulary's ids that the features lack (their rows hold the default row).
      num_missing: ``len(missing_ids)``; report it, a large number means features of another variant.
    """

    def __init__(self, features: dict[str, np.ndarray], missing_ids: np.ndarray):
        super().__init__(features)
        self.missing_ids = missing_ids

    @property
    def num_missing(self) -> int:
        return int(self.missing_ids.size)


def align_rows(vocabulary: Sequence[int] | np.ndarray, features: Mapping[str, np.ndarray], id_key: str,
               default: str | Mapping[str, Any] = "zeros", keys: Sequence[str] | None = None
               ) -> AlignedFeatures:  # fmt: skip
    """``features`` re-ordered to a model's embedding rows: row 0 for unknown ids, row ``i + 1`` for ``vocabulary[i]``.

    This is how :class:`tfrank.models.RankingModel` numbers its rows, so ``aligned[key][model_row]`` is the feature
    of the id the row embeds. Row 0 and the rows of vocabulary ids that ``features`` lacks hold the default row;
    those ids are in the result's ``missing_ids`` (and ``num_missing``), for the caller to report.

    Args:
      vocabulary: the ids, as the model's ``user_vocabulary`` / ``movie_vocabulary``.
      features: columns with one row per id, the ids in ``features[id_key]`` (each once).
      id_key: the id column, e.g. ``"movie_id"``.
      default: the default row: ``"zeros"`` (numbers 0, strings ``b""``: no genre, year 0 = unknown); ``"mean"``
        (each numeric feature's mean over the rows of ``features``, rounded for integers; strings ``b""``); or a
        mapping from feature name to a value (scalar or row), zeros for features it does not name, e.g.
        ``{"movie_mean_rating": history["global_mean_rating"]}``.
      keys: the features to align (not ``id_key``); None for all others, which must then all have one row per id
        (:func:`history_features` mixes users and movies: pass :data:`USER_HISTORY_KEYS` or
        :data:`MOVIE_HISTORY_KEYS`).

    Returns:
      :class:`AlignedFeatures`: ``{key: array [len(vocabulary) + 1, ...]}`` with ``missing_ids`` and ``num_missing``.

    Raises:
      ValueError: no ``id_key`` column, repeated ids, a feature of another length than the ids, an unknown
        ``default``.
    """
    if id_key not in features:
        raise ValueError(f"id_key={id_key!r} is not a feature (features: {sorted(features)})")
    ids = np.asarray(features[id_key]).reshape(-1).astype(np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"features[{id_key!r}] repeats ids {unique[counts > 1][:5].tolist()}: each id needs one row")
    vocabulary = np.asarray(vocabulary).reshape(-1).astype(np.int64)
    keys = [key for key in features if key != id_key] if keys is None else list(keys)
    if isinstance(default, str) and default not in ("zeros", "mean"):
        raise ValueError(f"default={default!r}: must be 'zeros', 'mean' or a mapping from feature name to value")
    order = np.argsort(ids, kind="stable")
    position = np.minimum(np.searchsorted(ids[order], vocabulary), max(len(ids) - 1, 0))
    found = (ids[order][position] == vocabulary) if len(ids) else np.zeros(len(vocabulary), bool)
    source_rows = order[position]
    aligned = {}
    for key in keys:
        if key not in features or key == id_key:
            raise ValueError(f"keys has {key!r}: not a feature besides {id_key!r} (features: {sorted(features)})")
        values = np.asarray(features[key])
        if values.ndim == 0 or values.shape[0] != len(ids):
            shape = values.shape
            raise ValueError(f"feature {key!r} has shape {shape} but there are {len(ids)} ids in {id_key!r}: pass "
                             f"keys= with the features of one row per {id_key}")  # fmt: skip
        fill = _default_row(key, values, default)
        rows = np.empty((len(vocabulary) + 1, *values.shape[1:]), values.dtype)
        rows[0] = fill
        rows[1:] = fill
        if len(ids):
            rows[1:][found] = values[source_rows[found]]
        aligned[key] = rows
    return AlignedFeatures(aligned, vocabulary[~found])


# ----------------------------------------------------------------------------------------------------------------


def _single_batch(dataset: tf.data.Dataset) -> dict[str, Any] | None:
    """The one batch ``dataset`` holds (None for no rows), data errors as one line (file, line, fix)."""
    try:
        return next(iter(dataset), None)
    except tf.errors.InvalidArgumentError as error:
        raise one_line(error) from error


def _concatenated(batches: tf.data.Dataset) -> dict[str, Any] | None:
    """The batches of ``batches`` joined into one (None for no rows); a loop over batches, not over rows."""
    parts = list(batches)
    if not parts:
        return None
    return {key: tf.concat([part[key] for part in parts], axis=0) for key in parts[0]}


def _as_text(values: np.ndarray) -> list[str]:
    return [value.decode("utf-8", errors="replace") for value in values]


def _year(title: str, release_date: str | None) -> int:
    found = _TITLE_YEAR.search(title)
    if found is None and release_date:
        found = _DATE_YEAR.search(release_date)
    return int(found.group(1)) if found else 0


def _multi_hot(names: np.ndarray, movie_index: np.ndarray, num_movies: int, origin: str,
               line_numbers: np.ndarray | None) -> np.ndarray:  # fmt: skip
    """float32 [num_movies, len(GENRES)] with 1 where movie ``movie_index[k]`` has genre ``names[k]``."""
    vocabulary = np.array([genre.encode() for genre in GENRES], dtype=object)
    order = np.argsort(vocabulary)
    position = np.minimum(np.searchsorted(vocabulary[order], names), len(GENRES) - 1).astype(np.int64)
    known = vocabulary[order][position] == names
    if not known.all():
        bad = int(np.flatnonzero(~known)[0])
        where = (f"line {line_numbers[movie_index[bad]]}" if line_numbers is not None
                 else f"movie {movie_index[bad]}")  # fmt: skip
        raise ValueError(
            f"Unknown genre {names[bad].decode('utf-8', errors='replace')!r} in {origin}, {where}: genres must be "
            f"among {', '.join(GENRES)} (100k and 1m may spell Children's and unknown). Fix the genre or the line."
        )
    multi_hot = np.zeros([num_movies, len(GENRES)], np.float32)
    multi_hot[movie_index, order[position]] = 1.0
    return multi_hot


def _train_columns(ratings: tf.data.Dataset | Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``user_id``, ``movie_id`` and ``user_rating`` as numpy, one rating per (user, movie) as sample_lists keeps."""
    if isinstance(ratings, Mapping):
        missing = [key for key in ("user_id", "movie_id", "user_rating") if key not in ratings]
        if missing:
            raise ValueError(f"train_ratings has no {missing}: pass the columns user_id, movie_id, user_rating")
        ratings = lists.from_memory({key: tf.convert_to_tensor(np.asarray(values)) for key, values in ratings.items()})
    try:
        users, movies, stars = lists._rating_columns(ratings)
    except tf.errors.InvalidArgumentError as error:
        raise one_line(error) from error
    return users.numpy(), movies.numpy(), stars.numpy()


def _rows_of(movies: np.ndarray, movie_features: Mapping[str, np.ndarray]) -> np.ndarray:
    """The row of each rated movie in ``movie_features``; a rated movie without a row is an error."""
    ids = np.asarray(movie_features["movie_id"]).astype(np.int64)
    order = np.argsort(ids, kind="stable")
    if len(ids) == 0:
        position = np.zeros(len(movies), np.int64)
        found = np.zeros(len(movies), bool)
    else:
        position = np.minimum(np.searchsorted(ids[order], movies), len(ids) - 1)
        found = ids[order][position] == movies
    if not found.all():
        absent = np.unique(movies[~found])
        raise ValueError(
            f"{absent.size} rated movies are not in movie_features (ids {absent[:5].tolist()}...): pass the movie "
            f"features of the variant the ratings come from"
        )
    return order[position]


def _default_row(key: str, values: np.ndarray, default: str | Mapping[str, Any]) -> Any:
    numeric = np.issubdtype(values.dtype, np.number) or values.dtype == bool
    zero = np.zeros(values.shape[1:], values.dtype) if numeric else b""
    if isinstance(default, Mapping):
        return np.asarray(default[key]).astype(values.dtype) if key in default else zero
    if default == "mean" and numeric and len(values):
        mean = values.mean(axis=0)
        return np.rint(mean).astype(values.dtype) if np.issubdtype(values.dtype, np.integer) else mean
    return zero
