"""Layers for ranking models: an embedding table that shards over parameter servers.

``EmbeddingTable(num_rows, dim)`` is a ``[num_rows, dim]`` table looked up by row: ``table(rows) -> [..., dim]``. Its
weights are one Keras variable, ``table.embeddings`` (path ``<name>/embeddings``, in ``trainable_variables``,
``.keras`` files, ``save_weights`` and ``tf.train.Checkpoint``). Under a ``ParameterServerStrategy`` whose
``variable_partitioner`` is :func:`tfrank.distribute.rows_partitioner` the table's ``tf.Variable`` is a
``ShardedVariable``: its rows are split over the parameter servers, a lookup gathers from each shard only the rows it
holds, and a checkpoint stores the shards as slices of one tensor, so sharded and whole tables restore into each other.

Train a sharded table with :class:`tfrank.optimizers.Adagrad` and :func:`tfrank.optimizers.gradients` (a tape cannot
differentiate a Keras variable whose value is sharded; that function differentiates its shards and returns one
row-sparse gradient per table)::

    table = EmbeddingTable(num_rows=1000, dim=16, name="movie_embedding")
    vectors = table(tf.constant([[3, 7], [0, 999]]))  # [2, 2, 16]
"""

import keras
import tensorflow as tf
from tensorflow.python.distribute import sharded_variable
from tensorflow.python.training.saving import saveable_object_util

from tfrank import distribute

_VALUE_KEY = "VARIABLE_VALUE"  # the checkpoint key of a variable's value, as tf.Variable writes it


def is_sharded(variable) -> bool:
    """Whether ``variable`` (a Keras variable or a ``tf.Variable``) is split into shards (a ``ShardedVariable``)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return isinstance(variable, sharded_variable.ShardedVariable)


def gather_rows(variable, rows: tf.Tensor) -> tf.Tensor:
    """``rows`` of ``variable`` (Keras or TF, whole or sharded), reading only those rows (of each shard)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value  # the tf.Variable, whose gather reads only the rows
    if isinstance(variable, sharded_variable.ShardedVariable):
        return tf.nn.embedding_lookup(variable, rows)
    return tf.gather(variable, rows)


class ShardableVariable(keras.Variable):
    """A Keras variable whose ``tf.Variable`` may be a ``ShardedVariable``, and which checkpoints either way.

    A Keras variable saves its value as one tensor, which a ``ShardedVariable`` is not; this one saves each shard as a
    slice of the whole table under the whole table's checkpoint key (as ``ShardedVariable`` itself does), so a
    checkpoint of a sharded table restores into a whole one and the other way round. Create it inside
    :func:`tfrank.distribute.sharded_rows` to have it sharded.
    """

    # TensorFlow's newer _serialize_to_tensors protocol hands a restore one tensor per key, losing the slices, so this
    # class keeps the saveables protocol, which reads each shard's slice.
    def _gather_saveables_for_checkpoint(self):
        value = self.value
        if isinstance(value, sharded_variable.ShardedVariable):
            return value._gather_saveables_for_checkpoint()  # noqa: SLF001

        def whole_saveable(name):
            return saveable_object_util.ResourceVariableSaveable(self.value, "", name)

        return {_VALUE_KEY: whole_saveable}


@keras.saving.register_keras_serializable(package="tfrank")
class EmbeddingTable(keras.layers.Layer):
    """A ``[num_rows, dim]`` embedding table looked up by row: ``call(rows) -> [..., dim]`` (``rows`` int, any shape).

    ``embeddings`` is the table's Keras variable (path ``<name>/embeddings``); ``embeddings.value`` is its
    ``tf.Variable``, or a ``ShardedVariable`` under a ``ParameterServerStrategy`` partitioned by
    :func:`tfrank.distribute.rows_partitioner`. A lookup reads only the rows asked for: a whole-table read would copy
    the table every step once a sparse optimizer has updated rows of it. ``rows`` must be in ``[0, num_rows)``.

    >>> table = EmbeddingTable(num_rows=5, dim=2, name="user_embedding")
    >>> table(tf.constant([[0, 4]])).shape
    TensorShape([1, 2, 2])
    """

    def __init__(self, num_rows: int, dim: int, embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        if num_rows < 1:
            raise ValueError(f"num_rows={num_rows}: must be >= 1")
        if dim < 1:
            raise ValueError(f"dim={dim}: must be >= 1")
        self.num_rows = int(num_rows)
        self.dim = int(dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings = None

    def build(self, input_shape=None):
        if self.built:
            return
        with keras.name_scope(self.name, caller=self), distribute.sharded_rows():
            self.embeddings = ShardableVariable(initializer=self.embeddings_initializer,
                                                shape=(self.num_rows, self.dim), dtype=self.variable_dtype,
                                                trainable=True, name="embeddings")
        self.built = True

    def call(self, rows):
        return gather_rows(self.embeddings, rows)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.dim,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_rows=self.num_rows, dim=self.dim,
                      embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer))
        return config
