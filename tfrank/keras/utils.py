"""TF Ranking's ``tfr.keras.utils`` gain, discount and positive functions, as tfrank's single definitions."""

from tfrank.ops import identity, inverse, is_greater_equal_1, log2_inverse, pow_minus_1

__all__ = ["identity", "inverse", "is_greater_equal_1", "log2_inverse", "pow_minus_1"]
