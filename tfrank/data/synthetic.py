"""MovieLens-shaped synthetic ratings for tests and scale benchmarks.

The generator mimics what matters for ranking data: movie popularity is long-tailed (Zipf-like), user activity is
long-tailed with every user rating at least ``min_ratings_per_user`` distinct movies, and each rating (1-5 stars)
comes from a latent user-movie affinity (a dot product of random factors plus movie bias plus noise), so a model can
learn something. Generation is numpy, vectorised in chunks of users, so MovieLens 25M sizes are practical.

:func:`write_movielens_csv` writes ``ratings.csv`` and ``movies.csv`` in the ml-20m / ml-25m format
(``userId,movieId,rating,timestamp`` sorted by user then movie, as GroupLens sorts them) so that the local-file
reader of :mod:`tfrank.data.movielens` runs at scale.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import tensorflow as tf

from tfrank.data.lists import from_memory
from tfrank.data.movielens import GENRES

_FIRST_TIMESTAMP = 789_652_009  # 1995-01-09, the first MovieLens rating
_LAST_TIMESTAMP = 1_574_327_703  # 2019-11-21, the last ml-25m rating
_LATENT_DIM = 8
# Affinity quantiles that separate 1..5 stars: roughly the MovieLens star distribution (6/11/27/34/22 %).
_STAR_QUANTILES = (0.06, 0.17, 0.44, 0.78)
# Genres a synthetic movie draws from: the MovieLens vocabulary without the two placeholders for "none known".
_GENRE_NAMES = tuple(genre for genre in GENRES if genre not in ("Unknown", "(no genres listed)"))


def generate_ratings(num_users: int, num_movies: int, num_ratings: int, seed: int = 0,
                     min_ratings_per_user: int = 20) -> dict[str, np.ndarray]:  # fmt: skip
    """Synthetic ratings as numpy columns, sorted by user then movie.

    Returns ``{"user_id": int64 [N], "movie_id": int64 [N], "user_rating": float32 [N], "timestamp": int64 [N]}``
    with ``N == num_ratings``, ids starting at 1, no repeated (user, movie) pair, every user with at least
    ``min_ratings_per_user`` ratings. The same arguments give the same arrays.
    """
    _check_sizes(num_users, num_movies, num_ratings, min_ratings_per_user)
    rng = np.random.default_rng(seed)
    counts = _ratings_per_user(rng, num_users, num_movies, num_ratings, min_ratings_per_user)
    popularity = 1.0 / (np.arange(num_movies) + 10.0) ** 1.1
    popularity = popularity[rng.permutation(num_movies)]  # popular movies are not the low ids
    popularity /= popularity.sum()
    movie_factors = rng.normal(size=(num_movies, _LATENT_DIM)).astype(np.float32)
    movie_bias = rng.normal(scale=0.7, size=num_movies).astype(np.float32)
    user_factors = rng.normal(size=(num_users, _LATENT_DIM)).astype(np.float32) / np.sqrt(_LATENT_DIM)
    thresholds = _star_thresholds(rng, user_factors, movie_factors, movie_bias)

    columns: dict[str, list[np.ndarray]] = {"user_id": [], "movie_id": [], "user_rating": [], "timestamp": []}
    chunk_users = max(1, 2_000_000 // max(1, num_ratings // num_users))
    for first in range(0, num_users, chunk_users):
        users = np.arange(first, min(first + chunk_users, num_users))
        user_index, movies = _distinct_movies(rng, users, counts[users], popularity)
        affinity = np.einsum("ij,ij->i", user_factors[user_index], movie_factors[movies]) + movie_bias[movies]
        affinity += rng.normal(scale=0.5, size=affinity.shape).astype(np.float32)
        columns["user_id"].append(user_index.astype(np.int64) + 1)
        columns["movie_id"].append(movies.astype(np.int64) + 1)
        columns["user_rating"].append((np.searchsorted(thresholds, affinity) + 1).astype(np.float32))
        columns["timestamp"].append(rng.integers(_FIRST_TIMESTAMP, _LAST_TIMESTAMP, size=len(movies), dtype=np.int64))
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def ratings_dataset(num_users: int = 943, num_movies: int = 1682, num_ratings: int = 100_000, seed: int = 0,
                    min_ratings_per_user: int = 20, batch_size: int | None = None) -> tf.data.Dataset:  # fmt: skip
    """MovieLens-shaped ratings generated in memory, as :func:`tfrank.data.load_ratings` gives them.

    Element: ``{"user_id": int64 [], "movie_id": int64 [], "user_rating": float32 [], "timestamp": int64 []}``
    (rank-1 features in batches with ``batch_size``), the schema of :func:`tfrank.data.load_ratings`. The defaults
    are the size of MovieLens 100K: 943 users, 1682 movies, 100,000 ratings, every user with at least 20. Each
    star rating comes from a planted user-movie affinity (a dot product of latent user and movie factors, plus a
    movie bias and noise), so a model that learns users' preferences ranks clearly better than chance. The same
    arguments give the same ratings, byte for byte; ratings come sorted by user, then movie, with no repeated
    pair. :func:`tfrank.data.split` and :func:`tfrank.data.sample_lists` read them as columns, not elements.

    Args:
      num_users: users, with ids 1..num_users.
      num_movies: movies, with ids 1..num_movies (a few may go unrated).
      num_ratings: ratings in all; at least ``num_users * min_ratings_per_user``, at most half of all pairs.
      seed: the generator's seed.
      min_ratings_per_user: fewest ratings of a user.
      batch_size: None for one rating per element; an int for batches of ratings (the last one smaller).
    """
    columns = generate_ratings(num_users, num_movies, num_ratings, seed, min_ratings_per_user)
    return from_memory({name: tf.constant(column) for name, column in columns.items()}, batch_size)


def write_movielens_csv(directory: str | os.PathLike, num_users: int, num_movies: int, num_ratings: int,
                        seed: int = 0) -> pathlib.Path:  # fmt: skip
    """Writes ``ratings.csv`` and ``movies.csv`` (ml-25m format) into ``directory`` and returns ``directory``.

    Read them back with ``load_ratings("25m", source=directory)``. Titles include quoted ones with commas and
    non-ASCII (UTF-8) characters, as in the real files.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ratings = generate_ratings(num_users, num_movies, num_ratings, seed)
    with open(directory / "ratings.csv", "wb") as out:
        out.write(b"userId,movieId,rating,timestamp\n")
        step = 1_000_000
        for begin in range(0, num_ratings, step):
            part = {name: column[begin : begin + step] for name, column in ratings.items()}
            out.write(_csv_rows(part))
    _write_movies_csv(directory / "movies.csv", num_movies, seed)
    return directory


# ----------------------------------------------------------------------------------------------------------------


def _check_sizes(num_users: int, num_movies: int, num_ratings: int, min_ratings_per_user: int) -> None:
    if num_users < 1:
        raise ValueError(f"num_users={num_users}: must be >= 1")
    if num_movies < min_ratings_per_user:
        raise ValueError(f"num_movies={num_movies}: must be >= min_ratings_per_user={min_ratings_per_user}")
    if num_ratings < num_users * min_ratings_per_user:
        raise ValueError(
            f"num_ratings={num_ratings}: must be >= num_users * min_ratings_per_user = "
            f"{num_users * min_ratings_per_user}; lower num_users or raise num_ratings"
        )
    if num_ratings > num_users * num_movies // 2:
        raise ValueError(
            f"num_ratings={num_ratings}: must be <= num_users * num_movies / 2 = {num_users * num_movies // 2} "
            f"so that users do not rate nearly every movie; raise num_movies or num_users"
        )


def _ratings_per_user(rng: np.random.Generator, num_users: int, num_movies: int, num_ratings: int,
                      minimum: int) -> np.ndarray:  # fmt: skip
    """Long-tailed counts, each in [minimum, num_movies // 2], summing to num_ratings."""
    cap = max(minimum, num_movies // 2)
    weights = rng.lognormal(sigma=1.2, size=num_users)
    counts = np.full(num_users, minimum, dtype=np.int64)
    extra = num_ratings - counts.sum()
    while extra > 0:
        room = cap - counts
        share = np.where(room > 0, weights, 0.0)
        add = np.minimum(np.floor(extra * share / share.sum()).astype(np.int64), room)
        if add.sum() == 0:  # spread the last few one by one over users with room
            add = np.zeros_like(counts)
            add[np.flatnonzero(room > 0)[:extra]] = 1
        counts += add
        extra = num_ratings - counts.sum()
    return counts


def _star_thresholds(rng: np.random.Generator, user_factors: np.ndarray, movie_factors: np.ndarray,
                     movie_bias: np.ndarray) -> np.ndarray:  # fmt: skip
    users = rng.integers(0, len(user_factors), size=100_000)
    movies = rng.integers(0, len(movie_factors), size=100_000)
    sample = np.einsum("ij,ij->i", user_factors[users], movie_factors[movies]) + movie_bias[movies]
    sample += rng.normal(scale=0.5, size=sample.shape)
    return np.quantile(sample, _STAR_QUANTILES).astype(np.float32)


def _distinct_movies(rng: np.random.Generator, users: np.ndarray, counts: np.ndarray,
                     popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """For each user, ``counts[i]`` distinct movies drawn by popularity; returns (user, movie) sorted by both."""
    num_movies = len(popularity)
    cumulative = np.cumsum(popularity)
    kept_keys = np.zeros(0, dtype=np.int64)
    deficit = counts.copy()
    while deficit.sum() > 0:
        draws = 2 * deficit + 8
        owner = np.repeat(users, draws)
        # 90% by popularity, 10% uniform: heavy users still find enough distinct tail movies.
        movies = np.searchsorted(cumulative, rng.random(len(owner)) * cumulative[-1])
        uniform = rng.random(len(owner)) < 0.1
        movies[uniform] = rng.integers(0, num_movies, size=int(uniform.sum()))
        movies = np.minimum(movies, num_movies - 1)
        candidate_keys = owner * num_movies + movies
        keys = np.concatenate([kept_keys, candidate_keys])
        # Kept pairs first (priority -1), new distinct pairs in random order, at most counts[user] per user.
        priority = np.concatenate([np.full(len(kept_keys), -1.0), rng.random(len(candidate_keys))])
        unique_keys, first = np.unique(keys, return_index=True)
        priority = priority[first]
        owner_of = unique_keys // num_movies
        order = np.lexsort((priority, owner_of))
        unique_keys, owner_of = unique_keys[order], owner_of[order]
        starts = np.searchsorted(owner_of, owner_of, side="left")
        rank = np.arange(len(owner_of)) - starts
        limit = counts[np.searchsorted(users, owner_of)]
        kept_keys = np.sort(unique_keys[rank < limit])
        have = np.bincount(np.searchsorted(users, kept_keys // num_movies), minlength=len(users))
        deficit = counts - have
    return kept_keys // num_movies, kept_keys % num_movies


def _digits(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned ASCII digits of non-negative ints as a [N, W] byte matrix and a mask of the digits in use."""
    width = max(1, len(str(int(values.max())))) if len(values) else 1
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (values[:, None] // powers) % 10
    used = (values[:, None] >= powers) | (powers == 1)
    return (digits + ord("0")).astype(np.uint8), used


def _csv_rows(columns: dict[str, np.ndarray]) -> bytes:
    """``userId,movieId,rating,timestamp`` lines, built as one byte matrix (no Python loop per line)."""
    n = len(columns["user_id"])
    pieces, masks = [], []

    def constant(text: str) -> None:
        pieces.append(np.frombuffer(text.encode(), dtype=np.uint8)[None, :].repeat(n, axis=0))
        masks.append(np.ones((n, len(text)), dtype=bool))

    for name in ("user_id", "movie_id"):
        digits, used = _digits(columns[name])
        pieces.append(digits), masks.append(used)
        constant(",")
    tenths = np.round(columns["user_rating"] * 10).astype(np.int64)
    rating = np.stack([tenths // 10 + ord("0"), np.full(n, ord(".")), tenths % 10 + ord("0")], axis=1)
    pieces.append(rating.astype(np.uint8)), masks.append(np.ones((n, 3), dtype=bool))
    constant(",")
    digits, used = _digits(columns["timestamp"])
    pieces.append(digits), masks.append(used)
    constant("\n")
    return np.concatenate(pieces, axis=1)[np.concatenate(masks, axis=1)].tobytes()


def _write_movies_csv(path: pathlib.Path, num_movies: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    years = rng.integers(1920, 2020, size=num_movies)
    genre_counts = rng.integers(1, 4, size=num_movies)
    lines = ["movieId,title,genres"]
    for index in range(num_movies):
        movie_id = index + 1
        if movie_id % 7 == 0:
            title = f'"Synthetic Film {movie_id}, The ({years[index]})"'
        elif movie_id % 11 == 0:
            title = f"Café Synthétique {movie_id} ({years[index]})"
        else:
            title = f"Synthetic Film {movie_id} ({years[index]})"
        genres = rng.choice(len(_GENRE_NAMES), size=genre_counts[index], replace=False)
        lines.append(f"{movie_id},{title},{'|'.join(_GENRE_NAMES[g] for g in sorted(genres))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
