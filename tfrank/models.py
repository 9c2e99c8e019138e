"""The ranking model: scores a list of movies for one user.

The architecture is the Keras-RS list-wise ranking tutorial's: user and movie embeddings, the user embedding repeated
for every item of the list and concatenated with that item's movie embedding, then an MLP (256 relu, 64 relu, 1) that
gives one score per item.
"""

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfrank.layers import EmbeddingTable
from tfrank.ops import PADDING_ID, PADDING_SCORE

_HIDDEN_UNITS = (256, 64)


def _check_vocabulary(name: str, vocabulary: Sequence[int] | np.ndarray) -> np.ndarray:
    ids = np.asarray(vocabulary).reshape(-1)
    if ids.size == 0:
        raise ValueError(f"{name} is empty: pass the ids seen in training")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} has dtype {ids.dtype}: ids must be integers")
    ids = ids.astype(np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{name} repeats ids {unique[counts > 1][:5].tolist()}: pass each id once (e.g. np.unique)")
    if (ids == PADDING_ID).any():
        raise ValueError(f"{name} contains PADDING_ID={PADDING_ID}: it is reserved for padded list items")
    return ids


def _id_to_row_table(ids: np.ndarray) -> tf.lookup.StaticHashTable:
    """Maps ``ids[i]`` to embedding row ``i + 1``; any other id to the out-of-vocabulary row 0."""
    rows = np.arange(1, ids.size + 1, dtype=np.int64)
    initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.constant(rows))
    return tf.lookup.StaticHashTable(initializer, default_value=0)


def _pad_scores(movie_id: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
    """``scores`` with ``PADDING_SCORE`` wherever ``movie_id`` is ``PADDING_ID``, for dense and ragged lists alike."""
    return tf.where(movie_id == PADDING_ID, tf.constant(PADDING_SCORE, tf.float32), scores)


def _check_one_user_per_list(user_id: tf.Tensor, movie_id: tf.Tensor | tf.RaggedTensor) -> tf.Tensor:
    """``user_id`` once it is known to hold one user per list of ``movie_id``.

    Without the check, one user id would broadcast over every list and score them all for that user.
    """
    if isinstance(movie_id, tf.RaggedTensor):
        num_lists = movie_id.nrows(out_type=tf.int64)
    else:
        if movie_id.shape.rank is not None and movie_id.shape.rank != 2:
            raise ValueError(f"movie_id has shape {movie_id.shape}: pass [batch, list_size] ids, one list per user_id")
        num_lists = tf.shape(movie_id, out_type=tf.int64)[0]
    check = tf.debugging.assert_equal(
        tf.shape(user_id, out_type=tf.int64)[0],
        num_lists,
        message="user_id and movie_id have different batch sizes: pass one user_id per list of movie_id",
    )
    if check is None:  # eager: already checked
        return user_id
    with tf.control_dependencies([check]):
        return tf.identity(user_id)


@keras.saving.register_keras_serializable(package="tfrank")
class RankingModel(keras.Model):
    """Scores every movie of a user's list: ``{"user_id", "movie_id"} -> scores`` shaped like ``movie_id``.

    Inputs are a dict of
      - ``user_id``: int64 ``[batch]`` (or ``[batch, 1]``);
      - ``movie_id``: int64 ``[batch, list_size]`` with short lists padded by ``PADDING_ID`` (-1), or a
        ``tf.RaggedTensor`` ``[batch, (list_size)]`` that needs no padding.

    The output is float32 scores: dense ``[batch, list_size]`` for dense ``movie_id``, a ``tf.RaggedTensor`` with the
    row lengths of ``movie_id`` for ragged input (scored on the flat values, so no work is spent on padding).

    Ids and embedding rows: ``user_vocabulary`` and ``movie_vocabulary`` list the ids seen in training; id
    ``vocabulary[i]`` uses embedding row ``i + 1``. Row 0 is a reserved out-of-vocabulary row shared by every id not in
    the vocabulary, so an unseen user or movie gets an ordinary finite score instead of an error. Padded items
    (``movie_id == PADDING_ID``, in dense or ragged input) get exactly ``PADDING_SCORE`` (-1e9), below any real score,
    so they sort last and are masked by the losses and metrics.

    ``user_id`` must hold one user per list: a batch-size mismatch raises ``InvalidArgumentError`` (also inside
    ``tf.function``) rather than broadcasting one user over every list; a dense ``movie_id`` of rank other than 2
    raises ``ValueError``.

    Example:

    >>> model = RankingModel(user_vocabulary=[1, 2], movie_vocabulary=[10, 20, 30], embedding_dim=4)
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
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim={embedding_dim}: must be >= 1")
        self._user_vocabulary = _check_vocabulary("user_vocabulary", user_vocabulary)
        self._movie_vocabulary = _check_vocabulary("movie_vocabulary", movie_vocabulary)
        self.embedding_dim = embedding_dim

        self.user_rows = _id_to_row_table(self._user_vocabulary)
        self.movie_rows = _id_to_row_table(self._movie_vocabulary)
        # Tables rather than keras.layers.Embedding: they read only the rows of a batch, and shard over parameter
        # servers (tfrank.layers).
        self.user_embedding = EmbeddingTable(self._user_vocabulary.size + 1, embedding_dim, name="user_embedding")
        self.movie_embedding = EmbeddingTable(self._movie_vocabulary.size + 1, embedding_dim, name="movie_embedding")
        self.hidden_layers = [
            keras.layers.Dense(units, activation="relu", name=f"hidden_{units}") for units in _HIDDEN_UNITS
        ]
        for index, layer in enumerate(self.hidden_layers):
            # An attribute each as well: tf.train.Checkpoint does not follow a Keras 3 model's list of layers, and
            # without these a resumed run would restart the hidden layers from their initial weights.
            setattr(self, f"hidden_layer_{index}", layer)
        self.score_layer = keras.layers.Dense(1, name="score")
        # Every weight shape is known from the vocabularies, so build now: weights exist before the first call and a
        # `.keras` file loads without replaying an input shape.
        self.build()

    @property
    def user_vocabulary(self) -> np.ndarray:
        return self._user_vocabulary

    @property
    def movie_vocabulary(self) -> np.ndarray:
        return self._movie_vocabulary

    def build(self, input_shape=None):
        if self.user_embedding.built:
            return
        self.user_embedding.build()
        self.movie_embedding.build()
        width = 2 * self.embedding_dim
        for layer in self.hidden_layers:
            layer.build((None, width))
            width = layer.units
        self.score_layer.build((None, width))

    def call(self, inputs):
        user_id = tf.reshape(tf.cast(inputs["user_id"], tf.int64), [-1])
        movie_id = inputs["movie_id"]
        user_id = _check_one_user_per_list(user_id, movie_id)
        # The first hidden layer sees [user embedding, movie embedding] for every item. Its user half is the same for
        # every item of a list, so it is computed once per list: the same function with a list_size-th of that
        # half's multiplications.
        first_layer = self.hidden_layers[0]
        # tf.split, not slicing: its gradient is one concat where two slices' gradients are two zero-filled kernels.
        user_kernel, movie_kernel = tf.split(first_layer.kernel, 2, axis=0)
        user_embeddings = self.user_embedding(self.user_rows.lookup(user_id))
        user_part = tf.matmul(user_embeddings, user_kernel)  # [batch, units]

        if isinstance(movie_id, tf.RaggedTensor):
            movie_part = self._movie_part(tf.cast(movie_id.flat_values, tf.int64), movie_kernel)
            hidden = movie_part + tf.gather(user_part, movie_id.value_rowids())
            return movie_id.with_flat_values(_pad_scores(movie_id.flat_values, self._score_hidden(hidden)))

        movie_id = tf.cast(movie_id, tf.int64)
        shape = tf.shape(movie_id)
        movie_part = self._movie_part(tf.reshape(movie_id, [-1]), movie_kernel)
        movie_part = tf.reshape(movie_part, [shape[0], shape[1], first_layer.units])
        hidden = tf.reshape(movie_part + user_part[:, tf.newaxis, :], [-1, first_layer.units])
        return _pad_scores(movie_id, tf.reshape(self._score_hidden(hidden), shape))

    def _movie_part(self, item_ids: tf.Tensor, movie_kernel: tf.Tensor) -> tf.Tensor:
        """The movie half of the first hidden layer's product for flat items ``[n]``: ``[n, units]``."""
        movie_embeddings = self.movie_embedding(self.movie_rows.lookup(item_ids))
        return tf.matmul(movie_embeddings, movie_kernel)

    def _score_hidden(self, first_products: tf.Tensor) -> tf.Tensor:
        """Scores ``[n]`` from the first hidden layer's products ``[n, units]`` (its bias and activation still due)."""
        first_layer = self.hidden_layers[0]
        features = first_layer.activation(tf.nn.bias_add(first_products, first_layer.bias))
        for layer in self.hidden_layers[1:]:
            features = layer(features)
        return tf.cast(tf.squeeze(self.score_layer(features), axis=-1), tf.float32)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            user_vocabulary=self._user_vocabulary.tolist(),
            movie_vocabulary=self._movie_vocabulary.tolist(),
            embedding_dim=self.embedding_dim,
        )
        return config


# TF Ranking's data (ELWC, LibSVM) is ranked by features, not ids: that model lives in its own module.
from tfrank.dnn_models import DNNRankingModel  # noqa: E402, F401
