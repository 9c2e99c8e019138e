"""A ranking model over ids and side features: a factorisation of the training ratings plus an MLP over features.

The tutorial's model (:class:`tfrank.models.RankingModel`) learns unregularised id embeddings from the ranking loss
alone and overfits the ids: on MovieLens it does not beat sorting each list by the movie's mean training rating.
:class:`FeatureRankingModel` starts from what that prior knows and adds what ids cannot learn from few ratings:

- a biased matrix factorisation of the training ratings (:func:`factorise_ratings`, alternating least squares with a
  strong ridge penalty), as the user and movie embeddings and the movie bias: ``b_m + p_u . q_m``. By default these
  rows stay fixed (``train_factors=False``) and the ranking loss learns how much they count (``factor_weight``);
  with ``train_factors=True`` they are fine-tuned, L2-penalised per row read (:meth:`FeatureRankingModel.penalty`);
- movie features: the movie's shrunk mean training rating and its rating count, and its genres (multi-hot);
- user features: the user's shrunk mean rating and rating count, and the user's genre affinity (how much more than
  the movie's consensus the user rates movies of each genre, shrunk towards 0);
- an MLP over ``[user features, movie features, user genre affinity * movie genres]``.

The tables are built at training time from the TRAINING ratings only (:func:`feature_tables`), aligned to the model's
vocabulary rows, and held by the model as weights: serving still takes ``{"user_id", "movie_id"}`` only, the tables
travel with checkpoints, ``.keras`` files and SavedModels, and an id outside the vocabulary reads row 0, the default
row (the global mean, no ratings, no genres, no affinity, zero factors).
"""

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfrank.data.movielens import GENRES
from tfrank.models import _check_one_user_per_list, _check_vocabulary, _id_to_row_table, _pad_scores
from tfrank.ops import PADDING_ID

# Pseudo-ratings at the global mean added to every movie's and user's mean, and at 0 to every genre affinity: a movie
# rated twice does not get its two ratings' mean.
MEAN_SHRINKAGE = 10.0
# Columns of the movie table before the genres, and of the user table before the genre affinities.
MOVIE_STATISTICS = ("movie_mean_rating", "movie_log_count")
USER_STATISTICS = ("user_mean_rating", "user_log_count")
_HIDDEN_UNITS = (64,)
# The factorisation that initialises the embeddings: ridge penalty and alternating least-squares passes.
FACTORISATION_L2 = 15.0
FACTORISATION_ITERATIONS = 10


def genre_matrix(movie_ids: np.ndarray, movie_genres: Sequence[Sequence[str]],
                 genres: Sequence[str] = GENRES) -> np.ndarray:
    """Multi-hot float32 ``[len(movie_ids), len(genres)]``: row ``i`` flags the genres of ``movie_genres[i]``.

    Raises:
      ValueError: a genre name is not in ``genres``.
    """
    index = {name: column for column, name in enumerate(genres)}
    matrix = np.zeros([len(movie_ids), len(genres)], np.float32)
    for row, names in enumerate(movie_genres):
        for name in names:
            name = name.decode() if isinstance(name, bytes) else name
            if name not in index:
                raise ValueError(f"movie {movie_ids[row]} has genre {name!r}: must be one of {', '.join(genres)}")
            matrix[row, index[name]] = 1.0
    return matrix


@dataclasses.dataclass(frozen=True)
class FeatureTables:
    """What :class:`FeatureRankingModel` is built from, aligned to its vocabulary rows (row 0: unknown ids).

    Attributes:
      user_table: float32 ``[num_users + 1, 2 + G]``: :data:`USER_STATISTICS`, then the user's genre affinities.
      movie_table: float32 ``[num_movies + 1, 2 + G]``: :data:`MOVIE_STATISTICS`, then the movie's genres.
      user_factors, movie_factors: float32 ``[rows, dim]``, a regularised factorisation of the training ratings
        (:func:`factorise_ratings`), the initial user and movie embeddings; None: random initial embeddings.
      movie_biases: float32 ``[num_movies + 1]``, the factorisation's movie biases, the initial movie biases.
    """

    user_table: np.ndarray
    movie_table: np.ndarray
    user_factors: np.ndarray | None = None
    movie_factors: np.ndarray | None = None
    movie_biases: np.ndarray | None = None


def factorise_ratings(user_rows: np.ndarray, movie_rows: np.ndarray, centred_ratings: np.ndarray,
                      num_user_rows: int, num_movie_rows: int, dim: int, l2: float = FACTORISATION_L2,
                      iterations: int = FACTORISATION_ITERATIONS, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Biased matrix factorisation by alternating least squares: ``rating - mean ~ b_u + b_m + p_u . q_m``.

    Each half-step solves every user's (then every movie's) ridge regression exactly, with penalty ``l2`` on the
    factors and the bias; rows without ratings (row 0, unknown ids) stay 0. Returns ``(p [num_user_rows, dim],
    q [num_movie_rows, dim], b_m [num_movie_rows])`` as float32; the user biases are dropped (they do not change a
    user's ranking).
    """
    rng = np.random.default_rng(seed)
    user_factors = rng.normal(0.0, 0.1, (num_user_rows, dim))
    movie_factors = rng.normal(0.0, 0.1, (num_movie_rows, dim))
    user_biases, movie_biases = np.zeros(num_user_rows), np.zeros(num_movie_rows)
    ridge = l2 * np.eye(dim + 1)

    def solve(rows, num_rows, other_rows, other_factors, other_biases, factors, biases):
        order = np.argsort(rows, kind="stable")
        starts = np.searchsorted(rows[order], np.arange(num_rows + 1))
        for row in range(1, num_rows):
            rated = order[starts[row]:starts[row + 1]]
            if rated.size == 0:
                factors[row], biases[row] = 0.0, 0.0
                continue
            design = np.concatenate([other_factors[other_rows[rated]], np.ones((rated.size, 1))], axis=1)
            targets = centred_ratings[rated] - other_biases[other_rows[rated]]
            solution = np.linalg.solve(design.T @ design + ridge, design.T @ targets)
            factors[row], biases[row] = solution[:dim], solution[dim]
        factors[0], biases[0] = 0.0, 0.0

    for _ in range(iterations):
        solve(user_rows, num_user_rows, movie_rows, movie_factors, movie_biases, user_factors, user_biases)
        solve(movie_rows, num_movie_rows, user_rows, user_factors, user_biases, movie_factors, movie_biases)
    return user_factors.astype(np.float32), movie_factors.astype(np.float32), movie_biases.astype(np.float32)


def feature_tables(user_ids: np.ndarray, movie_ids: np.ndarray, ratings: np.ndarray,
                   user_vocabulary: np.ndarray, movie_vocabulary: np.ndarray,
                   genres: np.ndarray | None = None, genre_movie_ids: np.ndarray | None = None,
                   shrinkage: float = MEAN_SHRINKAGE, factor_dim: int | None = None, seed: int = 0
                   ) -> FeatureTables:  # fmt: skip
    """The tables of :class:`FeatureRankingModel`, from the training ratings only.

    Args:
      user_ids, movie_ids, ratings: the training ratings, one entry per rating (never validation or test ratings:
        these tables are model inputs).
      user_vocabulary, movie_vocabulary: the model's vocabularies; table row ``i + 1`` describes ``vocabulary[i]``.
      genres: multi-hot ``[num_movies, G]`` (:func:`genre_matrix`) of the movies ``genre_movie_ids``; None: no genre
        columns (G = 0). A vocabulary movie missing from ``genre_movie_ids`` gets no genre.
      shrinkage: pseudo-ratings at the prior in every mean (:data:`MEAN_SHRINKAGE`).
      factor_dim: also factorise the ratings (:func:`factorise_ratings`) with this many factors; None: do not.
      seed: seeds the factorisation's starting point.

    Returns:
      :class:`FeatureTables`. Movie columns: :data:`MOVIE_STATISTICS` then the genres; user columns:
      :data:`USER_STATISTICS` then the genre affinities. Means are centred on the global mean rating, counts are
      ``log1p(count) / log1p(max count)``. Row 0 (ids outside the vocabulary) is all zeros: the global mean, no
      ratings, no genre, no factors.
    """
    user_ids = np.asarray(user_ids, np.int64).reshape(-1)
    movie_ids = np.asarray(movie_ids, np.int64).reshape(-1)
    ratings = np.asarray(ratings, np.float64).reshape(-1)
    if not user_ids.size == movie_ids.size == ratings.size:
        raise ValueError(f"user_ids, movie_ids and ratings have {user_ids.size}, {movie_ids.size} and {ratings.size} "
                         "entries: pass one entry per rating in each")
    user_rows = _rows(user_vocabulary, user_ids)
    movie_rows = _rows(movie_vocabulary, movie_ids)
    num_user_rows, num_movie_rows = len(user_vocabulary) + 1, len(movie_vocabulary) + 1
    global_mean = ratings.mean() if ratings.size else 0.0
    centred = ratings - global_mean

    def shrunk_mean_and_count(rows, num_rows):
        counts = np.bincount(rows, minlength=num_rows).astype(np.float64)
        means = np.bincount(rows, weights=centred, minlength=num_rows) / (counts + shrinkage)
        log_counts = np.log1p(counts) / max(np.log1p(counts.max()), 1.0)
        means[0], log_counts[0] = 0.0, 0.0
        return means, log_counts

    movie_mean, movie_count = shrunk_mean_and_count(movie_rows, num_movie_rows)
    user_mean, user_count = shrunk_mean_and_count(user_rows, num_user_rows)
    if genres is None:
        movie_genres = np.zeros([num_movie_rows, 0])
    else:
        genres = np.asarray(genres, np.float64)
        genre_rows = _rows(movie_vocabulary, np.asarray(genre_movie_ids, np.int64).reshape(-1))
        movie_genres = np.zeros([num_movie_rows, genres.shape[1]])
        known = genre_rows > 0
        movie_genres[genre_rows[known]] = genres[known]
        movie_genres[0] = 0.0
    # How much more than the movie's consensus the user rates a genre's movies.
    residuals = centred - movie_mean[movie_rows]
    rated_genres = movie_genres[movie_rows]  # [num_ratings, G]
    affinity_sums = np.zeros([num_user_rows, movie_genres.shape[1]])
    affinity_counts = np.zeros_like(affinity_sums)
    np.add.at(affinity_sums, user_rows, rated_genres * residuals[:, None])
    np.add.at(affinity_counts, user_rows, rated_genres)
    affinity = affinity_sums / (affinity_counts + shrinkage)
    affinity[0] = 0.0
    user_table = np.concatenate([user_mean[:, None], user_count[:, None], affinity], axis=1)
    movie_table = np.concatenate([movie_mean[:, None], movie_count[:, None], movie_genres], axis=1)
    factors = (None, None, None)
    if factor_dim is not None:
        factors = factorise_ratings(user_rows, movie_rows, centred, num_user_rows, num_movie_rows, factor_dim,
                                    seed=seed)
    return FeatureTables(user_table.astype(np.float32), movie_table.astype(np.float32), *factors)


def _rows(vocabulary: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The table row of each id: ``i + 1`` for ``vocabulary[i]``, 0 for ids outside the vocabulary."""
    vocabulary = np.asarray(vocabulary, np.int64).reshape(-1)
    order = np.argsort(vocabulary)
    positions = np.clip(np.searchsorted(vocabulary[order], ids), 0, max(vocabulary.size - 1, 0))
    found = vocabulary.size > 0 and vocabulary[order][positions] == ids
    return np.where(found, order[positions] + 1, 0).astype(np.int64)


def _check_table(name: str, table: np.ndarray | None, shape: tuple, optional: bool = False) -> np.ndarray | None:
    """``table`` as float32 once it has ``shape`` and finite values; None (optional) or zeros when not given."""
    if table is None:
        return None if optional else np.zeros(shape, np.float32)
    table = np.asarray(table, np.float32)
    if table.shape != shape:
        raise ValueError(f"{name} has shape {table.shape}: must be {shape} (row 0 for unknown ids, then one row per "
                         "vocabulary id, with embedding_dim factors; build it with feature_tables)")
    if not np.isfinite(table).all():
        raise ValueError(f"{name} holds NaN or infinite values: build it with feature_tables")
    return table


@keras.saving.register_keras_serializable(package="tfrank")
class FeatureRankingModel(keras.Model):
    """Scores every movie of a user's list from ids and feature tables: ``{"user_id", "movie_id"} -> scores``.

    The inputs, outputs, vocabularies, out-of-vocabulary row 0, ``PADDING_SCORE`` of padded items and the
    one-user-per-list check are those of :class:`tfrank.models.RankingModel`. The score of movie ``m`` for user
    ``u`` is::

        factor_weight * (movie_bias[m] + dot(user_embedding[u], movie_embedding[m]))
          + mlp([user_table[u], movie_table[m], user_affinity[u] * movie_genres[m]])

    with ``mlp`` a ``hidden_units`` relu MLP and a linear score. ``tables`` (:func:`feature_tables`) gives the
    feature tables (non-trainable weights) and the initial embeddings and movie biases (a factorisation of the
    training ratings); pass it when training. The config records only the tables' widths, so ``from_config`` gives
    zero tables and random embeddings until weights are loaded, as a ``.keras`` file or a checkpoint does.
    ``train_factors`` makes the embeddings and movie biases trainable, and ``l2`` then weighs :meth:`penalty`, the
    squared norm of the rows a batch reads, which the training loop of :mod:`tfrank.training` adds to the loss.

    Example:

    >>> model = FeatureRankingModel(user_vocabulary=[1, 2], movie_vocabulary=[10, 20, 30], embedding_dim=4)
    >>> scores = model({"user_id": tf.constant([1, 2], tf.int64),
    ...                 "movie_id": tf.constant([[10, 20, 30], [30, 99, -1]], tf.int64)})
    >>> scores.shape, float(scores[1, 2])
    (TensorShape([2, 3]), -1000000000.0)
    """

    def __init__(
        self,
        user_vocabulary: Sequence[int] | np.ndarray,
        movie_vocabulary: Sequence[int] | np.ndarray,
        embedding_dim: int = 32,
        tables: FeatureTables | None = None,
        num_genres: int = 0,
        l2: float = 0.01,
        hidden_units: Sequence[int] = _HIDDEN_UNITS,
        train_factors: bool = False,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim={embedding_dim}: must be >= 1")
        if not (l2 >= 0 and np.isfinite(l2)):
            raise ValueError(f"l2={l2}: must be a finite number >= 0")
        self._user_vocabulary = _check_vocabulary("user_vocabulary", user_vocabulary)
        self._movie_vocabulary = _check_vocabulary("movie_vocabulary", movie_vocabulary)
        self.embedding_dim = embedding_dim
        self.l2 = float(l2)
        self.hidden_units = tuple(int(units) for units in hidden_units)
        self.train_factors = bool(train_factors)
        tables = tables or FeatureTables(None, None)
        if tables.movie_table is not None:
            num_genres = np.shape(tables.movie_table)[1] - len(MOVIE_STATISTICS)
        self.num_genres = int(num_genres)
        user_width, movie_width = len(USER_STATISTICS) + self.num_genres, len(MOVIE_STATISTICS) + self.num_genres
        num_users, num_movies = self._user_vocabulary.size + 1, self._movie_vocabulary.size + 1
        user_table = _check_table("user_table", tables.user_table, (num_users, user_width))
        movie_table = _check_table("movie_table", tables.movie_table, (num_movies, movie_width))
        user_factors = _check_table("user_factors", tables.user_factors, (num_users, embedding_dim), optional=True)
        movie_factors = _check_table("movie_factors", tables.movie_factors, (num_movies, embedding_dim),
                                     optional=True)
        movie_biases = _check_table("movie_biases", tables.movie_biases, (num_movies,), optional=True)

        self.user_rows = _id_to_row_table(self._user_vocabulary)
        self.movie_rows = _id_to_row_table(self._movie_vocabulary)
        self.user_table = self.add_weight(shape=user_table.shape, initializer=keras.initializers.Constant(user_table),
                                          trainable=False, name="user_table")
        self.movie_table = self.add_weight(shape=movie_table.shape,
                                           initializer=keras.initializers.Constant(movie_table), trainable=False,
                                           name="movie_table")

        def initial(values, otherwise):
            return otherwise if values is None else keras.initializers.Constant(values)

        small = keras.initializers.RandomNormal(stddev=0.01)
        self.user_embedding = self.add_weight(shape=(num_users, embedding_dim),
                                              initializer=initial(user_factors, small),
                                              trainable=self.train_factors, name="user_embedding")
        self.movie_embedding = self.add_weight(shape=(num_movies, embedding_dim),
                                               initializer=initial(movie_factors, small),
                                               trainable=self.train_factors, name="movie_embedding")
        self.movie_bias = self.add_weight(shape=(num_movies,), initializer=initial(movie_biases, "zeros"),
                                          trainable=self.train_factors, name="movie_bias")
        # How much the factorisation's prediction counts next to the feature MLP.
        self.factor_weight = self.add_weight(shape=(), initializer="ones", name="factor_weight")
        self.hidden_layers = [keras.layers.Dense(units, activation="relu", name=f"hidden_{units}")
                              for units in self.hidden_units]
        self.score_layer = keras.layers.Dense(1, name="score")
        width = user_width + movie_width + self.num_genres
        for layer in self.hidden_layers:
            layer.build((None, width))
            width = layer.units
        self.score_layer.build((None, width))

    @property
    def user_vocabulary(self) -> np.ndarray:
        return self._user_vocabulary

    @property
    def movie_vocabulary(self) -> np.ndarray:
        return self._movie_vocabulary

    def build(self, input_shape=None):
        pass  # every weight is made in __init__: its shape is known from the vocabularies and tables

    def _lookups(self, inputs) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | tf.RaggedTensor]:
        """Per flat item: the user's row, the movie's row; and ``movie_id`` (dense int64 or ragged)."""
        user_id = tf.reshape(tf.cast(inputs["user_id"], tf.int64), [-1])
        movie_id = inputs["movie_id"]
        user_id = _check_one_user_per_list(user_id, movie_id)
        user_rows = self.user_rows.lookup(user_id)
        if isinstance(movie_id, tf.RaggedTensor):
            movie_id = movie_id.with_flat_values(tf.cast(movie_id.flat_values, tf.int64))
            flat_ids = movie_id.flat_values
            item_user_rows = tf.gather(user_rows, movie_id.value_rowids())
        else:
            movie_id = tf.cast(movie_id, tf.int64)
            flat_ids = tf.reshape(movie_id, [-1])
            item_user_rows = tf.repeat(user_rows, tf.shape(movie_id)[1])
        return item_user_rows, self.movie_rows.lookup(flat_ids), movie_id

    def call(self, inputs):
        user_rows, movie_rows, movie_id = self._lookups(inputs)
        # Rows of the variables, not whole-table reads: see tfrank.optimizers on sparse updates.
        user_vectors = tf.gather(self.user_embedding.value, user_rows)
        movie_vectors = tf.gather(self.movie_embedding.value, movie_rows)
        user_features = tf.gather(self.user_table.value, user_rows)
        movie_features = tf.gather(self.movie_table.value, movie_rows)
        affinity = user_features[:, len(USER_STATISTICS):] * movie_features[:, len(MOVIE_STATISTICS):]
        hidden = tf.concat([user_features, movie_features, affinity], axis=1)
        for layer in self.hidden_layers:
            hidden = layer(hidden)
        factorisation = tf.gather(self.movie_bias.value, movie_rows) + tf.reduce_sum(user_vectors * movie_vectors, -1)
        scores = tf.squeeze(self.score_layer(hidden), axis=-1) + self.factor_weight * factorisation
        scores = tf.cast(scores, tf.float32)
        if isinstance(movie_id, tf.RaggedTensor):
            return movie_id.with_flat_values(_pad_scores(movie_id.flat_values, scores))
        return _pad_scores(movie_id, tf.reshape(scores, tf.shape(movie_id)))

    def penalty(self, inputs) -> tf.Tensor:
        """``l2`` times the squared norms of the embedding and bias rows the batch's real items read, per list.

        A row read by many items of the batch is penalised that many times, as in matrix factorisation trained by
        stochastic gradient descent: the penalty shrinks rarely seen ids most relative to their data.
        """
        if not self.train_factors or self.l2 == 0:
            return tf.constant(0.0)
        user_rows, movie_rows, movie_id = self._lookups(inputs)
        flat_ids = movie_id.flat_values if isinstance(movie_id, tf.RaggedTensor) else tf.reshape(movie_id, [-1])
        real = tf.cast(flat_ids != PADDING_ID, tf.float32)
        squares = (tf.reduce_sum(tf.square(tf.gather(self.user_embedding.value, user_rows)), axis=-1)
                   + tf.reduce_sum(tf.square(tf.gather(self.movie_embedding.value, movie_rows)), axis=-1)
                   + tf.square(tf.gather(self.movie_bias.value, movie_rows)))
        num_lists = tf.cast(tf.shape(inputs["user_id"])[0], tf.float32)
        return self.l2 * tf.reduce_sum(real * squares) / tf.maximum(num_lists, 1.0)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            user_vocabulary=self._user_vocabulary.tolist(),
            movie_vocabulary=self._movie_vocabulary.tolist(),
            embedding_dim=self.embedding_dim,
            num_genres=self.num_genres,
            l2=self.l2,
            hidden_units=list(self.hidden_units),
            train_factors=self.train_factors,
        )
        return config
