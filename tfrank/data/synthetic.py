"""MovieLens-shaped synthetic ratings for tests and scale benchmarks.

The generator mimics what matters for ranking data: movie popularity is long-tailed (Zipf-like), user activity is
long-tailed with every user rating at least ``min_ratings_per_user`` distinct movies, and each rating (1-5 stars)
comes from a latent user-movie affinity (a dot product of random factors plus movie bias plus noise), so a model can
learn something. Generation is numpy, vectorised in chunks of users, so MovieLens 25M sizes are practical.

:func:`write_movielens_csv` writes ``ratings.csv`` and ``movies.csv`` in the ml-20m / ml-25m format
(``userId,movieId,rating,timestamp`` sorted by user then movie, as GroupLens sorts them) so that the local-file
reader of :mod:`tfrank.data.movielens` runs at scale.

:func:`movie_features` and :func:`user_features` give side features in the schema of
:func:`tfrank.data.load_movie_features` and :func:`tfrank.data.load_user_features`, planted from the same latent
factors as the ratings of the same arguments (genres from the movie factors, age, gender and occupation from the user
factors), so feature models can be tested and benchmarked without MovieLens; the ratings do not change with them.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import tensorflow as tf

from tfrank.data.lists import from_memory
from tfrank.data.movielens import GENRES, OCCUPATIONS_1M

_FIRST_TIMESTAMP = 789_652_009  # 1995-01-09, the first MovieLens rating
_LAST_TIMESTAMP = 1_574_327_703  # 2019-11-21, the last ml-25m rating
_LATENT_DIM = 8
# Affinity quantiles that separate 1..5 stars: roughly the MovieLens star distribution (6/11/27/34/22 %).
_STAR_QUANTILES = (0.06, 0.17, 0.44, 0.78)
# Genres a synthetic movie draws from: the MovieLens vocabulary without the two placeholders for "none known".
_GENRE_NAMES = tuple(genre for genre in GENRES if genre not in ("Unknown", "(no genres listed)"))
# Features draw from generators seeded with (seed, _FEATURES_STREAM + k), apart from the ratings' generator.
_FEATURES_STREAM = 1_000


def generate_ratings(num_users: int, num_movies: int, num_ratings: int, seed: int = 0,
                     min_ratings_per_user: int = 20) -> dict[str, np.ndarray]:  # fmt: skip
    """Synthetic ratings as numpy columns, sorted by user then movie.

    Returns ``{"user_id": int64 [N], "movie_id": int64 [N], "user_rating": float32 [N], "timestamp": int64 [N]}``
    with ``N == num_ratings``, ids starting at 1, no repeated (user, movie) pair, every user with at least
    ``min_ratings_per_user`` ratings. The same arguments give the same arrays.
    """
    rng, planted = _planted(num_users, num_movies, num_ratings, seed, min_ratings_per_user)
    counts, popularity = planted["counts"], planted["popularity"]
    movie_factors, movie_bias, user_factors = planted["movie_factors"], planted["movie_bias"], planted["user_factors"]
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


def movie_features(num_users: int = 943, num_movies: int = 1682, num_ratings: int = 100_000, seed: int = 0,
                   min_ratings_per_user: int = 20) -> dict[str, np.ndarray]:  # fmt: skip
    """Movie features that go with :func:`generate_ratings` of the same arguments, as
    :func:`tfrank.data.load_movie_features` gives them.

    Returns ``{"movie_id": int64 [num_movies] (1..num_movies), "genres": float32 [num_movies, len(GENRES)],
    "year": int64, "title": object}``. Each movie has 1 to 3 genres (never ``Unknown`` nor ``(no genres listed)``),
    the genres whose planted direction is closest to the movie's latent factors, so the genres a user likes say
    something about the ratings a user gives (what genre affinities and feature models can learn). Older movies
    have a higher planted bias on average, as in MovieLens. Deterministic: the same arguments give the same arrays.
    """
    _, planted = _planted(num_users, num_movies, num_ratings, seed, min_ratings_per_user)
    rng = np.random.default_rng([seed, _FEATURES_STREAM])  # a stream of its own: the ratings stay as they were
    factors = planted["movie_factors"]
    directions = rng.normal(size=(_LATENT_DIM, len(_GENRE_NAMES))).astype(np.float32)
    scores = factors @ directions / np.sqrt(_LATENT_DIM) + rng.normal(scale=0.5, size=(num_movies, len(_GENRE_NAMES)))
    num_genres = rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2], size=num_movies)
    rank = np.argsort(np.argsort(-scores, axis=1), axis=1)  # 0 for each movie's best genre
    genres = np.zeros([num_movies, len(GENRES)], np.float32)
    genres[:, [GENRES.index(name) for name in _GENRE_NAMES]] = rank < num_genres[:, None]
    bias = planted["movie_bias"] / 0.7  # standard normal
    years = np.clip(np.rint(1995 - 8 * bias + rng.normal(scale=12, size=num_movies)), 1920, 2019).astype(np.int64)
    movie_ids = np.arange(1, num_movies + 1, dtype=np.int64)
    return {
        "movie_id": movie_ids,
        "genres": genres,
        "year": years,
        "title": np.array([_title(movie_id, year).encode() for movie_id, year in zip(movie_ids, years)], object),
    }


def user_features(num_users: int = 943, num_movies: int = 1682, num_ratings: int = 100_000, seed: int = 0,
                  min_ratings_per_user: int = 20) -> dict[str, np.ndarray]:  # fmt: skip
    """User features that go with :func:`generate_ratings` of the same arguments, as
    :func:`tfrank.data.load_user_features` gives them for 100k.

    Returns ``{"user_id": int64 [num_users], "age": int64 (years, 7-73), "gender": object (b"M" / b"F"),
    "occupation": object (names of :data:`tfrank.data.OCCUPATIONS_1M`), "zip": object (5 digits)}``. Age, gender and
    occupation each follow one planted direction in the users' latent factors plus noise, so they carry some of
    a user's taste. Deterministic: the same arguments give the same arrays.
    """
    _, planted = _planted(num_users, num_movies, num_ratings, seed, min_ratings_per_user)
    rng = np.random.default_rng([seed, _FEATURES_STREAM + 1])
    factors = planted["user_factors"] * np.sqrt(_LATENT_DIM)  # standard normal entries
    age = np.clip(np.rint(33 + 9 * factors[:, 0] + rng.normal(scale=6, size=num_users)), 7, 73).astype(np.int64)
    male = factors[:, 1] + rng.normal(scale=0.7, size=num_users) > -0.5  # about 70% men, as in MovieLens
    directions = rng.normal(size=(_LATENT_DIM, len(OCCUPATIONS_1M)))
    occupation = np.argmax(factors @ directions + rng.gumbel(size=(num_users, len(OCCUPATIONS_1M))), axis=1)
    return {
        "user_id": np.arange(1, num_users + 1, dtype=np.int64),
        "age": age,
        "gender": np.where(male, b"M", b"F").astype(object),
        "occupation": np.array([OCCUPATIONS_1M[code].encode() for code in occupation], object),
        "zip": np.array([f"{code:05d}".encode() for code in rng.integers(0, 100_000, size=num_users)], object),
    }


def write_movielens_csv(directory: str | os.PathLike, num_users: int, num_movies: int, num_ratings: int,
                        seed: int = 0) -> pathlib.Path:  # fmt: skip
    """Writes ``ratings.csv`` and ``movies.csv`` (ml-25m format) into ``directory`` and returns ``directory``.

    Read them back with ``load_ratings("25m", source=directory)``. The movies are :func:`movie_features` of the
    same arguments (``load_movie_features("25m", source=directory)`` reads them back); titles include quoted ones
    with commas and non-ASCII (UTF-8) characters, as in the real files.
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
    _write_movies_csv(directory / "movies.csv", movie_features(num_users, num_movies, num_ratings, seed))
    return directory


# ----------------------------------------------------------------------------------------------------------------


def _planted(num_users: int, num_movies: int, num_ratings: int, seed: int, min_ratings_per_user: int
             ) -> tuple[np.random.Generator, dict[str, np.ndarray]]:  # fmt: skip
    """The generator after the planted draws, and what it planted: ratings per user, movie popularity, latent
    factors and biases. :func:`movie_features` and :func:`user_features` redraw them to match the ratings."""
    _check_sizes(num_users, num_movies, num_ratings, min_ratings_per_user)
    rng = np.random.default_rng(seed)
    counts = _ratings_per_user(rng, num_users, num_movies, num_ratings, min_ratings_per_user)
    popularity = 1.0 / (np.arange(num_movies) + 10.0) ** 1.1
    popularity = popularity[rng.permutation(num_movies)]  # popular movies are not the low ids
    popularity /= popularity.sum()
    movie_factors = rng.normal(size=(num_movies, _LATENT_DIM)).astype(np.float32)
    movie_bias = rng.normal(scale=0.7, size=num_movies).astype(np.float32)
    user_factors = rng.normal(size=(num_users, _LATENT_DIM)).astype(np.float32) / np.sqrt(_LATENT_DIM)
    return rng, {"counts": counts, "popularity": popularity, "movie_factors": movie_factors,
                 "movie_bias": movie_bias, "user_factors": user_factors}  # fmt: skip


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


def _title(movie_id: int, year: int) -> str:
    """Titles like the real files': some with a comma (quoted in a CSV), some non-ASCII."""
    if movie_id % 7 == 0:
        return f"Synthetic Film {movie_id}, The ({year})"
    if movie_id % 11 == 0:
        return f"Café Synthétique {movie_id} ({year})"
    return f"Synthetic Film {movie_id} ({year})"


def _write_movies_csv(path: pathlib.Path, movies: dict[str, np.ndarray]) -> None:
    lines = ["movieId,title,genres"]
    for movie_id, title, genres in zip(movies["movie_id"], movies["title"], movies["genres"]):
        title = title.decode("utf-8")
        quoted = '"' + title.replace('"', '""') + '"' if "," in title or '"' in title else title
        lines.append(f"{movie_id},{quoted},{'|'.join(GENRES[g] for g in np.flatnonzero(genres))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
