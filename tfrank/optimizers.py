"""Optimizers for ranking models: Keras's, with steps whose cost follows the rows a batch touches.

``Adagrad`` computes what ``keras.optimizers.Adagrad`` computes, with Keras's variables (so checkpoints interchange;
weight averaging adds two kinds), in plain TensorFlow ops whose work on an embedding table is proportional to the rows
of the batch, not to the table: Keras takes the square root of the whole accumulator for every ``IndexedSlices``
gradient, and its moving average of the weights (``use_ema``) rewrites every row of every table every step. Here the
root is taken of the touched accumulator rows only (the same numbers), and the moving average is kept lazily per row
(see ``Adagrad``).

The model must read its tables by rows too (``tf.gather`` of the ``tf.Variable``, or ``tfrank.layers.EmbeddingTable``):
once a variable has had sparse updates, TensorFlow copies all of it on every whole-variable read.

Tables sharded over parameter servers (``tfrank.layers.EmbeddingTable`` under ``tfrank.distribute``'s
``parameter_server`` strategy) train with ``Adagrad`` too: take their gradients with :func:`gradients`, which
differentiates each shard and returns one row-sparse gradient per table; ``Adagrad`` keeps the table's per-row state
in shards that hold the same rows, and updates each shard with the rows of the batch that it holds."""

from collections.abc import Sequence

import keras
import tensorflow as tf

from tfrank import distribute, layers

_NO_STEP = -1  # an average_step or lazy_average_start not set yet


def gradients(tape: tf.GradientTape, loss: tf.Tensor, variables: Sequence) -> list:
    """The gradient of ``loss`` for each of ``variables``, as ``tape.gradient`` gives it, sharded tables included.

    A tape cannot differentiate a Keras variable whose ``tf.Variable`` is sharded (a ``ShardedVariable`` has no
    ``handle``), so for those this differentiates each shard and joins the shards' row-sparse gradients into one
    ``tf.IndexedSlices`` over the whole table's rows (the shards' rows follow one another, in shard order).
    """
    sources = [_shards(variable) or variable for variable in variables]
    flat = tape.gradient(loss, tf.nest.flatten(sources))
    joined, position = [], 0
    for variable, source in zip(variables, sources):
        if not isinstance(source, list):
            joined.append(flat[position])
            position += 1
            continue
        shard_gradients = flat[position:position + len(source)]
        position += len(source)
        joined.append(_join_shard_gradients(variable, source, shard_gradients))
    return joined


def _shards(variable) -> list | None:
    """The shard ``tf.Variable``s of a sharded variable; None for a whole one."""
    if not layers.is_sharded(variable):
        return None
    value = variable.value if isinstance(variable, keras.Variable) else variable
    return list(value.variables)


def _join_shard_gradients(variable, shards: list, shard_gradients: list) -> tf.IndexedSlices | None:
    """One ``IndexedSlices`` over ``variable``'s rows from its shards' gradients (None where a shard has none)."""
    values, indices, offset = [], [], 0
    for shard, gradient in zip(shards, shard_gradients):
        if gradient is not None:
            if not isinstance(gradient, tf.IndexedSlices):  # a dense read of the shard: every row
                gradient = tf.IndexedSlices(gradient, tf.range(int(shard.shape[0]), dtype=tf.int64))
            values.append(gradient.values)
            indices.append(tf.cast(gradient.indices, tf.int64) + offset)
        offset += int(shard.shape[0])
    if not values:
        return None
    return tf.IndexedSlices(tf.concat(values, 0), tf.concat(indices, 0), tf.constant(tuple(variable.shape), tf.int64))


@keras.saving.register_keras_serializable(package="tfrank")
class Adagrad(keras.optimizers.Adagrad):
    """``keras.optimizers.Adagrad`` with the same arguments and arithmetic; a step costs what the batch touches.

    For each variable ``w`` with gradient ``g`` and accumulator ``a``::

        a += g ** 2
        w -= learning_rate * g / sqrt(a + epsilon)

    For an ``IndexedSlices`` gradient (embedding tables) only the rows it names change, as in Keras: a row named
    several times gets the sum of the squares of its slices in ``a``, and the sum of their steps in ``w``. The weights
    and accumulators are bit for bit Keras's, eagerly and in ``tf.function``.

    With ``use_ema=True`` the moving average ``average = m * average + (1 - m) * w`` (``m = ema_momentum``; the first
    step sets ``average = w``) is the one Keras keeps, but kept lazily: each averaged variable also has an int64
    ``average_step`` per row (the step its row of ``average`` was last brought up to date), and the optimizer a
    ``lazy_average_start`` (its first step). A step updates the average of the rows its gradients name; a row left
    alone for ``k`` steps did not change, so its average is caught up in one go on its next update,
    ``m**k * average + (1 - m**k) * w``, and ``finalize_variable_values`` catches every row up. The result equals
    Keras's dense average to float32 rounding (exactly, for rows updated every step). A checkpoint of Keras's Adagrad
    with ``use_ema`` restores into this class and trains on with the same averages (its checkpoint lacks the two new
    kinds of variables, so read it with ``expect_partial()``); the other way round, the average slots of rows not
    updated lately lag behind until ``finalize_variable_values``. Keras's ``SwapEMAWeights`` callback reads the
    average slots directly, so it sees the lagging rows: finalize instead. Unlike Keras, finalizing before any step
    leaves the weights as they are (Keras's average is still zeros then). With ``gradient_accumulation_steps`` or
    ``ema_overwrite_frequency`` the average is Keras's own, dense one.

    >>> optimizer = Adagrad(learning_rate=1.0)
    >>> weights = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(tf.constant([0.3, 0.0]), weights)])
    >>> [round(float(w), 4) for w in weights.numpy()]  # 1 - 0.3 / sqrt(0.1 + 0.3 ** 2): Keras's start value is 0.1
    [0.3118, 2.0]
    """

    @property
    def _averages_lazily(self) -> bool:
        # Keras averages at every call under gradient accumulation, and overwrites the weights mid-step with
        # ema_overwrite_frequency; both keep Keras's own dense average.
        return bool(self.use_ema) and not self.gradient_accumulation_steps and not self.ema_overwrite_frequency

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if not self._averages_lazily:
            return
        steps = []
        for variable, average in zip(var_list, self._model_variables_moving_average):
            if average is None:  # a variable Keras does not average
                steps.append(None)
                continue
            name = _variable_name(variable) + "_average_step"
            if layers.is_sharded(variable):
                steps.append(self._add_sharded_variable((variable.shape[0],), keras.initializers.Constant(_NO_STEP),
                                                        "int64", name))
                continue
            reference = variable.value if isinstance(variable, keras.Variable) else variable
            with self._distribution_strategy.extended.colocate_vars_with(reference):
                steps.append(self.add_variable(
                    shape=tuple(variable.shape[:1]), initializer=keras.initializers.Constant(_NO_STEP),
                    dtype="int64", name=name))
        self._average_steps = steps
        self._lazy_average_start = self.add_variable(
            shape=(), initializer=keras.initializers.Constant(_NO_STEP), dtype="int64",
            aggregation="only_first_replica", name="lazy_average_start")

    def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
        if not layers.is_sharded(reference_variable):
            return super().add_variable_from_reference(reference_variable, name=name, initializer=initializer)
        # Sharded like the table, so that each parameter server holds the state of its own rows.
        return self._add_sharded_variable(tuple(reference_variable.shape), initializer, reference_variable.dtype,
                                          f"{_variable_name(reference_variable)}_{name or 'var'}")

    def _add_sharded_variable(self, shape: tuple, initializer, dtype, name: str) -> keras.Variable:
        """An optimizer variable split by rows like a sharded table (whole outside a sharding strategy)."""
        with keras.name_scope(self.name, caller=self), distribute.sharded_rows():
            variable = layers.ShardableVariable(initializer=keras.initializers.get(initializer), shape=shape,
                                                dtype=dtype, trainable=False, name=name)
        self._track_variable(variable)
        return variable

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        whole = []
        for gradient, variable in grads_and_vars:
            if layers.is_sharded(variable):
                # A strategy updates only whole variables; the scatters of update_step update each shard with the
                # rows it holds.
                self.update_step(gradient, variable, learning_rate)
            else:
                whole.append((gradient, variable))
        super()._distributed_tf_update_step(distribution, whole, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        accumulator = self._accumulators[index]
        learning_rate = tf.cast(learning_rate, variable.dtype)
        averages = self._averages_lazily and self._model_variables_moving_average[index] is not None
        if isinstance(gradient, tf.IndexedSlices):
            values = tf.cast(gradient.values, variable.dtype)
            rows, positions = tf.unique(gradient.indices)
            if averages:
                caught_up = self._caught_up_average(index, variable, rows, self._step() - 1)
            self.assign_add(accumulator, tf.IndexedSlices(tf.square(values), gradient.indices, gradient.dense_shape))
            # The root of the touched rows, gathered back to the slices: the same numbers as Keras's root of the whole
            # accumulator. Dividing by the gather (not by the sqrt itself) keeps Grappler from rewriting
            # x / sqrt(y) into x * rsqrt(y), which differs in the last bit.
            root = tf.sqrt(layers.gather_rows(accumulator, rows) + self.epsilon)
            step = learning_rate * values / tf.gather(root, positions)
            self.assign_sub(variable, tf.IndexedSlices(step, gradient.indices, gradient.dense_shape))
        else:
            rows = None
            gradient = tf.cast(gradient, variable.dtype)
            if averages:
                caught_up = self._caught_up_average(index, variable, rows, self._step() - 1)
            self.assign_add(accumulator, tf.square(gradient))
            step = learning_rate * gradient / tf.sqrt(accumulator.value + self.epsilon)
            self.assign_sub(variable, step)
        if averages:
            self._update_average(index, variable, rows, caught_up)

    def _step(self) -> tf.Tensor:
        """The index of the step being applied (0 for the first), as int64."""
        return tf.cast(tf.convert_to_tensor(self._iterations), tf.int64)

    def _lazy_start(self) -> tf.Tensor:
        """The first step this optimizer averaged lazily: the step being applied when it has applied none yet."""
        start = tf.convert_to_tensor(self._lazy_average_start)
        return tf.where(start == _NO_STEP, self._step(), start)

    def _backend_apply_gradients(self, grads, trainable_variables):
        super()._backend_apply_gradients(grads, trainable_variables)
        if self._averages_lazily:
            self._lazy_average_start.assign(self._lazy_start())

    def _caught_up_average(self, index: int, variable, rows: tf.Tensor | None, step: tf.Tensor) -> tf.Tensor:
        """The average of ``rows`` (None: all) of variable ``index`` as of the end of ``step``.

        Valid while those rows of the weights have not changed since their ``average_step``: the average then moved
        towards a constant ``w``, so ``k`` missed steps are ``m**k * average + (1 - m**k) * w``. A row without an
        ``average_step`` has the average it had before the first lazy step: none, when that was the first step (Keras's
        first step sets the average to the weights), else the one restored (from Keras's dense average, say).
        """
        average = _read(self._model_variables_moving_average[index], rows)
        weights = _read(variable, rows)
        last_step = _read(self._average_steps[index], rows)
        last_step = tf.where(last_step == _NO_STEP, self._lazy_start() - 1, last_step)
        if average.shape.rank > 1:  # one step per row, broadcast over the row's values
            last_step = tf.reshape(last_step, [-1] + [1] * (average.shape.rank - 1))
        decay = tf.pow(tf.constant(self.ema_momentum, average.dtype), tf.cast(step - last_step, average.dtype))
        lagging = tf.where(last_step == step, average, decay * average + (1 - decay) * weights)
        return tf.where(last_step == _NO_STEP, weights, lagging)  # before the first step: no average yet

    def _update_average(self, index: int, variable, rows: tf.Tensor | None, caught_up: tf.Tensor) -> None:
        """Keras's average update for ``rows`` (None: all) of variable ``index``, from their caught-up average."""
        step = self._step()
        weights = _read(variable, rows)
        # As Keras computes it: momentum 0 at the first step, so the average starts at the weights.
        momentum = tf.cast(tf.not_equal(step, 0), weights.dtype) * tf.constant(self.ema_momentum, weights.dtype)
        self._write(self._model_variables_moving_average[index], rows, momentum * caught_up + (1 - momentum) * weights)
        self._write(self._average_steps[index], rows, step)

    def _write(self, variable, rows: tf.Tensor | None, values: tf.Tensor) -> None:
        """Writes ``values`` (a scalar is broadcast) into ``rows`` (None: all) of ``variable``."""
        if rows is None:
            self.assign(variable, tf.broadcast_to(values, variable.shape))
        else:
            values = tf.broadcast_to(values, tf.concat([tf.shape(rows), variable.shape[1:]], 0))
            # The static shape: tf.shape would read the whole variable.
            self.assign(variable, tf.IndexedSlices(values, rows, tf.constant(tuple(variable.shape), tf.int64)))

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self._averages_lazily:
            super()._update_model_variables_moving_average(trainable_variables)
        # Else update_step has averaged the rows it changed; the others are caught up when next changed or finalized.

    def _overwrite_model_variables_with_average_value(self, trainable_variables):
        if not self._averages_lazily:
            super()._overwrite_model_variables_with_average_value(trainable_variables)
            return
        if len(trainable_variables) != len(self._model_variables_moving_average):
            raise ValueError(
                f"finalize_variable_values got {len(trainable_variables)} variables but the optimizer averages "
                f"{len(self._model_variables_moving_average)}: pass the variables it was built with")
        for index, variable in enumerate(trainable_variables):
            if self._model_variables_moving_average[index] is None:
                continue
            target = variable.value if isinstance(variable, keras.Variable) else variable
            if layers.is_sharded(target):
                self._overwrite_with_average(target, index)
            else:
                self._distribution_strategy.extended.update(target, self._overwrite_with_average, args=(index,),
                                                            group=False)

    def _overwrite_with_average(self, variable, index: int) -> None:
        """Catches every row's average up to the last step, and puts it into ``variable``."""
        last_step = self._step() - 1
        average = self._caught_up_average(index, variable, None, last_step)
        self._write(self._model_variables_moving_average[index], None, average)
        self._write(self._average_steps[index], None, last_step)
        self.assign(variable, average)


def _read(variable, rows: tf.Tensor | None) -> tf.Tensor:
    """``rows`` of ``variable`` (None: all of it)."""
    if rows is not None:
        return layers.gather_rows(variable, rows)
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return tf.convert_to_tensor(variable)


def _variable_name(variable) -> str:
    """``variable``'s name as Keras's optimizer variables spell it (``dense/kernel`` -> ``dense_kernel``)."""
    if hasattr(variable, "path"):
        return variable.path.replace("/", "_")
    return str(variable.name).replace("/", "_").replace(":", "_")
