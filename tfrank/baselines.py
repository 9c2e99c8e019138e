"""Rating baselines that a ranking model must beat, and the statistics that say whether it does.

Baselines predict a rating for (user, movie) pairs from training ratings alone (numpy, no TensorFlow); sorting a
list by the predictions ranks it. Each is fit with ``fit(user_ids, movie_ids, ratings)`` and predicts with
``predict(user_ids, movie_ids)`` (arrays of one shape, or broadcastable: ``user_ids[:, None]`` against a
``[lists, list_size]`` matrix of movie ids). A user or movie not seen in training gets no term of its own.

- :class:`MovieMean`: the movie's mean training rating, optionally shrunk towards the global mean by
  ``shrinkage`` pseudo-ratings: ``(sum_i + shrinkage * mean) / (count_i + shrinkage)``. Unshrunk it is the
  popularity prior of the tutorial's protocol.
- :class:`GenreAffinity`: a base model plus the user's affinity for the movie's genres. The affinity of user u for
  genre g is the shrunk mean residual of the base over u's training ratings of movies with g:
  ``a_ug = sum_{i in R(u), g in G(i)} (r_ui - base(u, i)) / (n_ug + shrinkage)``, and the prediction adds the mean
  affinity over the movie's genres: ``base(u, i) + mean_{g in G(i)} a_ug``.
- :class:`BiasedMF`: ``mean + b_u + b_i + p_u . q_i`` fit by alternating least squares: each half-step solves
  every user's (then every movie's) ridge regression ``(X^T X + l2 I) w = X^T y`` in closed form, with ``w`` the
  entity's bias and factors, so biases and factors carry the same L2 penalty ``l2`` per entity.
- :func:`fit_best`: fits a baseline for each point of a hyperparameter grid and keeps the one with the lowest RMSE
  on validation ratings.

Statistics for comparing rankers on the same lists:

- :func:`per_list_ndcg`: each list's nDCG@k and weight, computed by :class:`tfrank.metrics.NDCGMetric`, so that
  their weighted mean is the number the training run reports;
- :func:`t_interval`: a mean over seeds with its Student-t confidence interval;
- :func:`paired_bootstrap`: the mean paired difference between two rankers over the same lists, with a
  percentile bootstrap interval that resamples lists within each seed (stratified by seed).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfrank import metrics as tfrank_metrics

# Student-t 0.975 quantiles for 1..30 degrees of freedom (two-sided 95% intervals).
_T_975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788, 2.1604,
    2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555,
    2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z_975 = 1.959964


def _check_ratings(user_ids: np.ndarray, movie_ids: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, ...]:
    user_ids, movie_ids = np.asarray(user_ids, np.int64).reshape(-1), np.asarray(movie_ids, np.int64).reshape(-1)
    ratings = np.asarray(ratings, np.float64).reshape(-1)
    if not len(user_ids) == len(movie_ids) == len(ratings):
        raise ValueError(f"user_ids, movie_ids and ratings have lengths {len(user_ids)}, {len(movie_ids)} and "
                         f"{len(ratings)}: pass one user, movie and rating per training rating")
    if len(ratings) == 0:
        raise ValueError("no training ratings: fit on at least one rating")
    if not np.isfinite(ratings).all():
        raise ValueError("ratings hold NaN or infinite values: drop them before fitting")
    return user_ids, movie_ids, ratings


def _rows(vocabulary: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``ids`` in the sorted ``vocabulary`` and whether each id is in it (unknown ids get row 0)."""
    ids = np.asarray(ids, np.int64)
    rows = np.clip(np.searchsorted(vocabulary, ids), 0, len(vocabulary) - 1)
    known = vocabulary[rows] == ids
    return np.where(known, rows, 0), known


class RatingModel(abc.ABC):
    """A rating predictor fit on training ratings; its predictions rank a user's list."""

    @abc.abstractmethod
    def fit(self, user_ids: np.ndarray, movie_ids: np.ndarray, ratings: np.ndarray) -> RatingModel:
        """Fits on one rating per element of the three 1-D arrays; returns ``self``."""

    @abc.abstractmethod
    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """Predicted ratings, float64, shaped like ``user_ids`` and ``movie_ids`` broadcast together."""

    def rmse(self, user_ids: np.ndarray, movie_ids: np.ndarray, ratings: np.ndarray) -> float:
        """Root mean squared error of the predictions against ``ratings``."""
        errors = self.predict(user_ids, movie_ids) - np.asarray(ratings, np.float64)
        return float(np.sqrt(np.mean(errors**2)))


class MovieMean(RatingModel):
    """The movie's mean training rating, shrunk by ``shrinkage`` pseudo-ratings at the global mean (0: none).

    A movie without training ratings gets the global mean.

    >>> model = MovieMean(shrinkage=1.0).fit([1, 2, 1], [10, 10, 20], [5.0, 3.0, 1.0])
    >>> model.predict([1, 1, 1], [10, 20, 30]).tolist()  # global mean 3: (8 + 3) / 3, (1 + 3) / 2, 3
    [3.6666666666666665, 2.0, 3.0]
    """

    def __init__(self, shrinkage: float = 0.0):
        if not shrinkage >= 0:
            raise ValueError(f"shrinkage={shrinkage}: must be >= 0 pseudo-ratings (0 turns shrinking off)")
        self.shrinkage = float(shrinkage)

    def fit(self, user_ids: np.ndarray, movie_ids: np.ndarray, ratings: np.ndarray) -> MovieMean:
        _, movie_ids, ratings = _check_ratings(user_ids, movie_ids, ratings)
        self.global_mean = float(ratings.mean())
        self.movies, rows = np.unique(movie_ids, return_inverse=True)
        counts = np.bincount(rows, minlength=len(self.movies))
        sums = np.bincount(rows, weights=ratings, minlength=len(self.movies))
        self.means = (sums + self.shrinkage * self.global_mean) / (counts + self.shrinkage)
        return self

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        user_ids, movie_ids = np.broadcast_arrays(np.asarray(user_ids, np.int64), np.asarray(movie_ids, np.int64))
        rows, known = _rows(self.movies, movie_ids)
        return np.where(known, self.means[rows], self.global_mean)


def multi_hot_genres(movie_ids: Sequence[int], genres: Sequence[Sequence[str]],
                     vocabulary: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(movie_ids int64 [n], multi_hot float64 [n, len(vocabulary)])`` from each movie's genre names.

    Raises:
      ValueError: a genre name outside ``vocabulary``, or a movie id given twice.
    """
    index = {name: column for column, name in enumerate(vocabulary)}
    movie_ids = np.asarray(movie_ids, np.int64).reshape(-1)
    if len(np.unique(movie_ids)) != len(movie_ids):
        raise ValueError("movie_ids repeats a movie: give each movie's genres once")
    multi_hot = np.zeros((len(movie_ids), len(vocabulary)))
    for row, names in enumerate(genres):
        for name in names:
            name = name.decode() if isinstance(name, bytes) else name
            if name not in index:
                raise ValueError(f"genre {name!r} of movie {movie_ids[row]} is not in the vocabulary "
                                 f"({', '.join(vocabulary)}): add it or map it to a known genre")
            multi_hot[row, index[name]] = 1.0
    return movie_ids, multi_hot


class GenreAffinity(RatingModel):
    """``base`` plus the user's shrunk mean residual of ``base`` on the movie's genres (see the module docstring).

    Args:
      base: the rating model whose residuals the affinities explain; it is fit by :meth:`fit`.
      movie_ids: movies with known genres, int ``[n]``; other movies get no affinity term.
      genres: their multi-hot genres, ``[n, num_genres]`` (0/1).
      shrinkage: pseudo-ratings of residual 0 in each affinity, so that few ratings give a small affinity.
      refit_base: False keeps ``base`` as it is (already fit on the same training ratings): a grid over
        ``shrinkage`` then fits the base once.

    >>> genres = np.array([[1.0, 0.0], [0.0, 1.0]])  # movie 10: genre 0; movie 20: genre 1
    >>> model = GenreAffinity(MovieMean(), [10, 20], genres, shrinkage=1.0)
    >>> model = model.fit([1, 2, 1, 2], [10, 10, 20, 20], [5.0, 3.0, 2.0, 2.0])
    >>> model.predict([1, 1], [10, 20]).tolist()  # user 1: residual +1 on genre 0 -> 4 + 1 / 2; 0 on genre 1
    [4.5, 2.0]
    """

    def __init__(self, base: RatingModel, movie_ids: Sequence[int], genres: np.ndarray, shrinkage: float = 5.0,
                 refit_base: bool = True):
        if not shrinkage >= 0:
            raise ValueError(f"shrinkage={shrinkage}: must be >= 0 pseudo-ratings")
        genres = np.asarray(genres, np.float64)
        movie_ids = np.asarray(movie_ids, np.int64).reshape(-1)
        if genres.ndim != 2 or genres.shape[0] != len(movie_ids):
            raise ValueError(f"genres has shape {genres.shape}: pass one multi-hot row per movie id "
                             f"([{len(movie_ids)}, num_genres])")
        order = np.argsort(movie_ids)
        self.base, self.shrinkage, self.refit_base = base, float(shrinkage), bool(refit_base)
        self.genre_movies, self.genres = movie_ids[order], genres[order]

    def _movie_genres(self, movie_ids: np.ndarray) -> np.ndarray:
        rows, known = _rows(self.genre_movies, movie_ids)
        return self.genres[rows] * known[..., None]

    def fit(self, user_ids: np.ndarray, movie_ids: np.ndarray, ratings: np.ndarray) -> GenreAffinity:
        user_ids, movie_ids, ratings = _check_ratings(user_ids, movie_ids, ratings)
        if self.refit_base:
            self.base.fit(user_ids, movie_ids, ratings)
        residuals = ratings - self.base.predict(user_ids, movie_ids)
        self.users, user_rows = np.unique(user_ids, return_inverse=True)
        movie_genres = self._movie_genres(movie_ids)  # [ratings, genres]
        sums = np.zeros((len(self.users), self.genres.shape[1]))
        counts = np.zeros_like(sums)
        np.add.at(sums, user_rows, movie_genres * residuals[:, None])
        np.add.at(counts, user_rows, movie_genres)
        self.affinities = sums / (counts + self.shrinkage) if self.shrinkage > 0 else np.divide(
            sums, counts, out=np.zeros_like(sums), where=counts > 0)
        return self

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        user_ids, movie_ids = np.broadcast_arrays(np.asarray(user_ids, np.int64), np.asarray(movie_ids, np.int64))
        rows, known = _rows(self.users, user_ids)
        affinities = self.affinities[rows] * known[..., None]  # [..., genres]
        movie_genres = self._movie_genres(movie_ids)
        count = movie_genres.sum(axis=-1)
        genre_term = np.divide((affinities * movie_genres).sum(axis=-1), count, out=np.zeros(count.shape),
                               where=count > 0)
        return self.base.predict(user_ids, movie_ids) + genre_term


class BiasedMF(RatingModel):
    """Biased matrix factorisation ``mean + b_u + b_i + p_u . q_i`` fit by alternating least squares.

    Args:
      dim: factors per user and movie.
      l2: ridge penalty on each user's and movie's bias and factors (per entity, not per rating).
      iterations: ALS rounds (a user half-step, then a movie half-step).
      seed: seeds the movie factors' initial values.
    """

    def __init__(self, dim: int = 32, l2: float = 10.0, iterations: int = 15, seed: int = 0):
        if dim < 1:
            raise ValueError(f"dim={dim}: must be >= 1")
        if not l2 > 0:
            raise ValueError(f"l2={l2}: must be > 0 (the normal equations of an entity with few ratings need it)")
        if iterations < 1:
            raise ValueError(f"iterations={iterations}: must be >= 1")
        self.dim, self.l2, self.iterations, self.seed = int(dim), float(l2), int(iterations), int(seed)

    def fit(self, user_ids: np.ndarray, movie_ids: np.ndarray, ratings: np.ndarray) -> BiasedMF:
        user_ids, movie_ids, ratings = _check_ratings(user_ids, movie_ids, ratings)
        self.global_mean = float(ratings.mean())
        self.users, user_rows = np.unique(user_ids, return_inverse=True)
        self.movies, movie_rows = np.unique(movie_ids, return_inverse=True)
        rng = np.random.default_rng(self.seed)
        # Column 0 is the bias, columns 1: the factors.
        self.user_params = np.zeros((len(self.users), self.dim + 1))
        self.movie_params = np.zeros((len(self.movies), self.dim + 1))
        self.movie_params[:, 1:] = rng.normal(scale=0.1, size=(len(self.movies), self.dim))
        centred = ratings - self.global_mean
        by_user, by_movie = _Groups(user_rows, len(self.users)), _Groups(movie_rows, len(self.movies))
        for _ in range(self.iterations):
            self.user_params = self._solve(by_user, movie_rows, self.movie_params, centred)
            self.movie_params = self._solve(by_movie, user_rows, self.user_params, centred)
        return self

    def _solve(self, groups: _Groups, other_rows: np.ndarray, other_params: np.ndarray,
               centred: np.ndarray) -> np.ndarray:  # fmt: skip
        """Each entity's ridge solution ``[bias, factors]`` given the other side's biases and factors."""
        # The entity's own bias multiplies a constant 1; the other side's bias is part of the target.
        design = np.concatenate([np.ones((len(centred), 1)), other_params[other_rows, 1:]], axis=1)
        targets = centred - other_params[other_rows, 0]
        design, targets = design[groups.order], targets[groups.order]
        width = self.dim + 1
        grams = np.empty((groups.count, width, width))
        moments = np.empty((groups.count, width))
        for entity, (begin, end) in enumerate(zip(groups.starts[:-1], groups.starts[1:])):
            rows = design[begin:end]
            grams[entity] = rows.T @ rows
            moments[entity] = targets[begin:end] @ rows
        grams += self.l2 * np.eye(width)
        return np.linalg.solve(grams, moments[..., None])[..., 0]

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        user_ids, movie_ids = np.broadcast_arrays(np.asarray(user_ids, np.int64), np.asarray(movie_ids, np.int64))
        user_rows, user_known = _rows(self.users, user_ids)
        movie_rows, movie_known = _rows(self.movies, movie_ids)
        user = self.user_params[user_rows] * user_known[..., None]
        movie = self.movie_params[movie_rows] * movie_known[..., None]
        return self.global_mean + user[..., 0] + movie[..., 0] + np.sum(user[..., 1:] * movie[..., 1:], axis=-1)


class _Groups:
    """Ratings grouped by entity row: ``order`` sorts the ratings by entity, ``starts`` bounds each entity's run."""

    def __init__(self, rows: np.ndarray, count: int):
        self.count = count
        self.order = np.argsort(rows, kind="stable")
        self.starts = np.searchsorted(rows[self.order], np.arange(count + 1))


Ratings = tuple[np.ndarray, np.ndarray, np.ndarray]  # (user_ids, movie_ids, ratings)


def fit_best(make: Callable[..., RatingModel], grid: Sequence[Mapping[str, Any]], train: Ratings,
             validation: Ratings) -> tuple[RatingModel, dict, list[dict]]:  # fmt: skip
    """Fits ``make(**point)`` on ``train`` for every point of ``grid``; keeps the lowest validation RMSE.

    ``train`` and ``validation`` are ``(user_ids, movie_ids, ratings)``. Returns the best fitted model, its grid
    point, and every point with its ``validation_rmse`` (in grid order). Ties keep the earlier point.
    """
    if not grid:
        raise ValueError("grid is empty: give at least one hyperparameter point")
    best, best_point, tried = None, None, []
    for point in grid:
        model = make(**point).fit(*train)
        tried.append({**point, "validation_rmse": model.rmse(*validation)})
        if best is None or tried[-1]["validation_rmse"] < best_point["validation_rmse"]:
            best, best_point = model, tried[-1]
    return best, dict(best_point), tried


# -- Statistics ----------------------------------------------------------------------------------------------------


def per_list_ndcg(labels: Any, scores: Any, topn: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Each list's nDCG@topn and weight, ``(values [lists], weights [lists])``, as :class:`NDCGMetric` counts them.

    ``labels`` and ``scores`` are ``[lists, list_size]``, padded items labelled ``PADDING_LABEL``. The metric over
    the lists is ``sum(values * weights) / sum(weights)``: every list with a valid item weighs 1 (nDCG's list
    weight without sample weights) and a list without one weighs 0.
    """
    metric = tfrank_metrics.NDCGMetric(topn=topn)
    lists, valid = metric.prepare(tf.constant(labels, tf.float32), tf.constant(scores, tf.float32))
    values, weights = metric.per_list(lists)
    weights = tf.where(tf.reduce_any(valid, axis=1, keepdims=True), weights, tf.zeros_like(weights))
    return values.numpy()[:, 0].astype(np.float64), weights.numpy()[:, 0].astype(np.float64)


def t_quantile_975(degrees_of_freedom: int) -> float:
    """The Student-t 0.975 quantile (a table to 30 degrees of freedom, a Cornish-Fisher expansion beyond)."""
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees_of_freedom={degrees_of_freedom}: must be >= 1")
    if degrees_of_freedom <= len(_T_975):
        return _T_975[degrees_of_freedom - 1]
    z, n = _Z_975, degrees_of_freedom
    return z + (z**3 + z) / (4 * n) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its two-sided 95% Student-t interval; NaN bounds for one value."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        raise ValueError("values is empty: pass one value per seed")
    mean = float(values.mean())
    if values.size == 1:
        return mean, math.nan, math.nan
    half = t_quantile_975(values.size - 1) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, mean - half, mean + half


def paired_bootstrap(differences: Sequence[np.ndarray], weights: Sequence[np.ndarray] | None = None,
                     num_resamples: int = 10_000, seed: int = 0,
                     confidence: float = 0.95) -> tuple[float, float, float]:  # fmt: skip
    """The mean paired difference over seeds and its percentile bootstrap interval, ``(mean, low, high)``.

    ``differences[s]`` holds, for seed ``s``, one difference per list between two rankers on the same lists (e.g.
    a model's nDCG minus the prior's), and ``weights[s]`` the lists' weights (1 when None). The statistic is the
    mean over seeds of each seed's weighted mean difference. Each resample draws, within every seed, as many lists
    as it has, with replacement (a bootstrap stratified by seed), and recomputes the statistic; the interval is
    the resamples' ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles. It covers the uncertainty of
    the finite test lists for these trained models, not that of training them again.
    """
    if not differences:
        raise ValueError("differences is empty: pass one array of per-list differences per seed")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: must be in (0, 1)")
    if num_resamples < 1:
        raise ValueError(f"num_resamples={num_resamples}: must be >= 1")
    if weights is None:
        weights = [np.ones(len(d)) for d in differences]
    rng = np.random.default_rng(seed)
    observed, resampled = [], np.zeros(num_resamples)
    for seed_differences, seed_weights in zip(differences, weights, strict=True):
        d, w = np.asarray(seed_differences, np.float64), np.asarray(seed_weights, np.float64)
        if d.shape != w.shape or d.ndim != 1 or w.sum() <= 0:
            raise ValueError(f"differences and weights of a seed have shapes {d.shape} and {w.shape} (total weight "
                             f"{w.sum()}): pass 1-D arrays of one length with a positive total weight")
        observed.append(float(np.sum(d * w) / np.sum(w)))
        chunk = max(1, 2_000_000 // len(d))  # bounds the [resamples, lists] index matrix
        for begin in range(0, num_resamples, chunk):
            size = min(chunk, num_resamples - begin)
            drawn = rng.integers(0, len(d), size=(size, len(d)))
            total = np.take(w, drawn).sum(axis=1)
            resampled[begin:begin + size] += np.divide(np.take(d * w, drawn).sum(axis=1), total, out=np.zeros(size),
                                                       where=total > 0)
    resampled /= len(differences)
    low, high = np.quantile(resampled, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(np.mean(observed)), float(low), float(high)
