"""Gumbel sampling of scores, shared by ``GumbelApproxNDCGLoss`` and ``YetiLogisticLoss``.

Each list is repeated ``sample_size`` times; draw k gets z = log(softmax((s + g_k) / gumbel_temperature) + 1e-20)
with g_k ~ Gumbel(0, 1) on valid items, and the loss is taken over the batch * sample_size lists, with labels and
weights repeated (TF Ranking's ``GumbelSampler``).

Difference from TF Ranking: TF Ranking draws the noise with stateful ``tf.random.uniform`` (random unless the global
and op seeds are set). tfrank draws it with ``tf.random.stateless_uniform`` and seed ``[seed, 0]`` (``seed=None``
means 0), so the loss is a deterministic function of its inputs: the same seed and shapes give the same noise on
every call. Given the same noise the value equals TF Ranking's.
"""

import math
from typing import Optional

import tensorflow as tf

from tfrank._arguments import check_count, check_positive


def stateless_gumbel(shape, seed: Optional[int]) -> tf.Tensor:
    """Standard Gumbel noise of ``shape``, a function of ``seed`` only (None means 0)."""
    uniform = tf.random.stateless_uniform(shape, seed=[seed or 0, 0], dtype=tf.float32)
    return -tf.math.log(-tf.math.log(uniform + 1e-20) + 1e-20)


def repeat_lists(tensor: tf.Tensor, samples: int) -> tf.Tensor:
    """[batch, n] -> [batch * samples, n], each list repeated ``samples`` times in a row."""
    batch_size, width = tf.shape(tensor)[0], tf.shape(tensor)[1]
    # The width is given, not inferred (-1): an empty batch has no elements to infer it from.
    return tf.reshape(tf.repeat(tensor[:, tf.newaxis, :], samples, axis=1), [batch_size * samples, width])


class GumbelSampling:
    """Mixin for a ``RankingLoss`` evaluated on Gumbel-sampled copies of each list (see the module docstring)."""

    def _init_gumbel(self, sample_size: int, gumbel_temperature: float, seed: Optional[int]):
        self.sample_size = check_count(sample_size, "sample_size", type(self).__name__)
        self.gumbel_temperature = check_positive(gumbel_temperature, "gumbel_temperature", type(self).__name__)
        self.seed = seed

    def gumbel_noise(self, shape) -> tf.Tensor:
        """Standard Gumbel noise of ``shape`` [batch, sample_size, list_size], a function of ``seed`` only."""
        return stateless_gumbel(shape, self.seed)

    def __call__(self, y_true, y_pred, sample_weight=None) -> tf.Tensor:
        with tf.name_scope(self.name):
            labels, scores, mask, sample_weight = self.prepare(y_true, y_pred, sample_weight)
            labels, scores, mask, sample_weight = self.sample_lists(labels, scores, mask, sample_weight)
            values, weights = self.compute(labels, self.scale(scores), mask, sample_weight)
            return self._reduce(values, weights)

    def sample_lists(self, labels, scores, mask, sample_weight):
        """(labels, sampled scores, mask, sample_weight), each with ``batch * sample_size`` lists."""
        batch_size, list_size = tf.unstack(tf.shape(labels))
        samples = self.sample_size
        noisy = scores[:, tf.newaxis, :] + self.gumbel_noise([batch_size, samples, list_size])
        noisy = tf.reshape(noisy, [batch_size * samples, list_size])
        mask = repeat_lists(mask, samples)
        noisy = tf.where(mask, noisy / self.gumbel_temperature, math.log(1e-20))
        noisy = tf.math.log(tf.nn.softmax(noisy) + 1e-20)
        if sample_weight is not None:
            sample_weight = repeat_lists(sample_weight * tf.ones_like(labels[:, :1]), samples)
        return repeat_lists(labels, samples), noisy, mask, sample_weight

    def get_config(self):
        config = super().get_config()
        config.update(
            {"sample_size": self.sample_size, "gumbel_temperature": self.gumbel_temperature, "seed": self.seed}
        )
        return config
