"""A feature-based ranking network for TF Ranking's data (ELWC, LibSVM): TF Ranking's canned DNN shape.

Each item of a list is scored from its own dense features, as TF Ranking's ``DNNScorer`` examples do
(``keras_dnn_tfrecord.py``): the numerical features -> ``sign(x) * log1p(|x|)`` -> batch normalisation -> Dense
layers (relu) -> one score. Items are scored independently, so a list may have any length.

    model = tfrank.dnn_models.DNNRankingModel(feature_names=[str(i) for i in range(1, 137)])
    features, labels = next(iter(tfrank.data.read_libsvm("train.txt", 136, list_size=10)))
    scores = model(features)                     # [32, 10]

Padded items: a dense input may carry a boolean mask ``[batch, list_size]`` under ``mask_feature_name``
(``MASK_FEATURE``, TF Ranking's ``example_list_mask``); items where it is False get ``PADDING_SCORE`` and are never
seen by the network, so batch normalisation's statistics come from real items only. Without a mask every item is
real. Ragged inputs (``tf.RaggedTensor`` features ``[batch, None, 1]``) need no mask: their scores are ragged too.
"""

from collections.abc import Sequence

import keras
import tensorflow as tf

from tfrank.ops import PADDING_SCORE

# TF Ranking's name for the boolean [batch, list_size] feature that marks the real (not padded) items of a list.
MASK_FEATURE = "example_list_mask"
DEFAULT_HIDDEN_UNITS = (64, 32)


def log1p_transform(features: tf.Tensor) -> tf.Tensor:
    """``sign(x) * log1p(|x|)``: TF Ranking's transform that tames heavy-tailed LETOR features, keeping their sign."""
    return tf.math.sign(features) * tf.math.log1p(tf.math.abs(features))


@keras.saving.register_keras_serializable(package="tfrank")
class DNNRankingModel(keras.Model):
    """Scores every item of a list from its features: ``{name: [batch, list_size, 1], ...} -> [batch, list_size]``.

    Args:
      feature_names: the per-item numerical features, in the order they are concatenated; each input is float
        ``[batch, list_size]`` or ``[batch, list_size, 1]`` (dense), or ragged ``[batch, None(, 1)]``.
      hidden_units: the widths of the relu Dense layers.
      dropout: dropout rate after each hidden layer during training.
      batch_norm_momentum: momentum of the input batch normalisation's moving statistics.
      mask_feature_name: the input that marks real items of dense lists (boolean ``[batch, list_size]``); absent
        from the inputs: every item is real.

    Example:

    >>> model = DNNRankingModel(feature_names=["1", "2"])
    >>> scores = model({"1": tf.ones([2, 3, 1]), "2": tf.zeros([2, 3, 1]),
    ...                 "example_list_mask": tf.constant([[True, True, False], [True, True, True]])})
    >>> scores.shape, float(scores[0, 2])
    (TensorShape([2, 3]), -1000000000.0)
    """

    def __init__(self, feature_names: Sequence[str], hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS,
                 dropout: float = 0.0, batch_norm_momentum: float = 0.99, mask_feature_name: str = MASK_FEATURE,
                 name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        feature_names = [str(feature) for feature in feature_names]
        if not feature_names:
            raise ValueError("feature_names is empty: name the per-item numerical features, e.g. ['1', ..., '136']")
        if len(set(feature_names)) != len(feature_names):
            raise ValueError(f"feature_names={feature_names}: names a feature twice; name each once")
        if mask_feature_name in feature_names:
            raise ValueError(f"mask_feature_name={mask_feature_name!r} is also a feature name: give the mask another "
                             "name")
        hidden_units = [int(units) for units in hidden_units]
        if any(units < 1 for units in hidden_units):
            raise ValueError(f"hidden_units={hidden_units}: every layer needs >= 1 unit")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout}: must be in [0, 1)")
        self.feature_names = feature_names
        self.hidden_units = hidden_units
        self.dropout = float(dropout)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.mask_feature_name = mask_feature_name
        self.input_batch_norm = keras.layers.BatchNormalization(momentum=batch_norm_momentum, name="input_batch_norm")
        self.hidden_layers = [keras.layers.Dense(units, activation="relu", name=f"hidden_{index}_{units}")
                              for index, units in enumerate(hidden_units)]
        for index, layer in enumerate(self.hidden_layers):
            # An attribute each as well: tf.train.Checkpoint does not follow a Keras 3 model's list of layers.
            setattr(self, f"hidden_layer_{index}", layer)
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout") if dropout > 0 else None
        self.score_layer = keras.layers.Dense(1, name="score")
        # Every weight shape is known from the feature names: weights exist before the first call, and a `.keras`
        # file or checkpoint loads without replaying an input.
        self.build()

    def build(self, input_shape=None):
        if self.score_layer.built:
            return
        width = len(self.feature_names)
        self.input_batch_norm.build((None, width))
        for layer in self.hidden_layers:
            layer.build((None, width))
            width = layer.units
        self.score_layer.build((None, width))

    def score_items(self, item_features: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Scores ``[n]`` of items ``[n, num_features]`` (their raw features, in ``feature_names`` order)."""
        hidden = self.input_batch_norm(log1p_transform(tf.cast(item_features, tf.float32)), training=training)
        for layer in self.hidden_layers:
            hidden = layer(hidden)
            if self.dropout_layer is not None:
                hidden = self.dropout_layer(hidden, training=training)
        return tf.squeeze(self.score_layer(hidden), axis=-1)

    def _item_columns(self, inputs: dict, ragged: bool) -> list:
        missing = [name for name in self.feature_names if name not in inputs]
        if missing:
            raise ValueError(f"inputs lack features {missing[:5]}{' ...' if len(missing) > 5 else ''}: pass every "
                             f"feature of feature_names (inputs have {sorted(inputs)[:5]} ...)")
        columns = []
        for name in self.feature_names:
            values = inputs[name]
            if ragged != isinstance(values, tf.RaggedTensor):
                raise ValueError(f"feature {name!r} is {'dense' if ragged else 'ragged'} while "
                                 f"{self.feature_names[0]!r} is not: pass all features dense or all ragged")
            if ragged:
                values = values.flat_values
                columns.append(tf.reshape(values, [-1, 1]))
            else:
                columns.append(values if values.shape.rank == 3 else values[..., tf.newaxis])
        return columns

    def call(self, inputs, training=None):
        first = inputs[self.feature_names[0]] if self.feature_names[0] in inputs else None
        if isinstance(first, tf.RaggedTensor):
            item_features = tf.concat(self._item_columns(inputs, ragged=True), axis=-1)
            scores = self.score_items(item_features, training=training)
            row_splits = first.row_splits
            return tf.RaggedTensor.from_row_splits(scores, row_splits, validate=False)
        features = tf.concat([tf.cast(column, tf.float32) for column in self._item_columns(inputs, ragged=False)],
                             axis=-1)  # [batch, list_size, num_features]
        shape = tf.shape(features)[:2]
        mask = inputs.get(self.mask_feature_name)
        if mask is None:
            scores = self.score_items(tf.reshape(features, [-1, len(self.feature_names)]), training=training)
            return tf.reshape(scores, shape)
        # Only real items go through the network: batch normalisation learns no statistics of padding.
        positions = tf.where(tf.cast(mask, tf.bool))
        scores = self.score_items(tf.gather_nd(features, positions), training=training)
        padded = tf.fill(shape, tf.constant(PADDING_SCORE, tf.float32))
        return tf.tensor_scatter_nd_update(padded, positions, scores)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(feature_names=list(self.feature_names), hidden_units=list(self.hidden_units),
                      dropout=self.dropout, batch_norm_momentum=self.batch_norm_momentum,
                      mask_feature_name=self.mask_feature_name)
        return config
