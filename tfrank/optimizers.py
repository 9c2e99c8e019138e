"""Optimizers for ranking models: Keras's, with updates that build fewer TensorFlow ops.

``Adagrad`` computes exactly what ``keras.optimizers.Adagrad`` computes, with the same variables (so checkpoints
interchange), in plain TensorFlow ops. Keras's version goes through its backend-neutral ops, whose ``IndexedSlices``
handling adds a ``tf.cond`` and a zero/NaN scan of the accumulator per embedding table: tracing the tutorial's train
step spent 0.49 s in Keras's per-variable updates and spends 0.08 s in these (under cProfile; BUILD.md).
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfrank")
class Adagrad(keras.optimizers.Adagrad):
    """``keras.optimizers.Adagrad`` with the same arguments, variables and arithmetic, built from fewer ops.

    For each variable ``w`` with gradient ``g`` and accumulator ``a``::

        a += g ** 2
        w -= learning_rate * g / sqrt(a + epsilon)

    For an ``IndexedSlices`` gradient (embedding tables) only the rows it names change, as in Keras: a row named
    several times gets the sum of the squares of its slices in ``a``, and the sum of their steps in ``w``.

    >>> optimizer = Adagrad(learning_rate=1.0)
    >>> weights = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(tf.constant([0.3, 0.0]), weights)])
    >>> [round(float(w), 4) for w in weights.numpy()]  # 1 - 0.3 / sqrt(0.1 + 0.3 ** 2): Keras's start value is 0.1
    [0.3118, 2.0]
    """

    def update_step(self, gradient, variable, learning_rate):
        accumulator = self._accumulators[self._get_variable_index(variable)]
        learning_rate = tf.cast(learning_rate, variable.dtype)
        if isinstance(gradient, tf.IndexedSlices):
            values = tf.cast(gradient.values, variable.dtype)
            self.assign_add(accumulator, tf.IndexedSlices(tf.square(values), gradient.indices, gradient.dense_shape))
            # The root of the whole accumulator, then its rows, as Keras does: bit for bit the same steps (taking the
            # rows first lets a graph rewrite x / sqrt(y) into x * rsqrt(y), a last-bit difference).
            root = tf.gather(tf.sqrt(accumulator.value + self.epsilon), gradient.indices)
            step = tf.IndexedSlices(learning_rate * values / root, gradient.indices, gradient.dense_shape)
        else:
            gradient = tf.cast(gradient, variable.dtype)
            self.assign_add(accumulator, tf.square(gradient))
            step = learning_rate * gradient / tf.sqrt(accumulator.value + self.epsilon)
        self.assign_sub(variable, step)
