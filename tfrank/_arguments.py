"""Constructor-argument checks and (de)serialisation shared by the losses, lambda weights and metrics.

One definition each, so that ``topn=0`` or a custom ``gain_fn`` means the same to a loss and to a metric. The
gain, discount and positive functions of ``tfrank.ops`` are registered with Keras here (as ``tfrank>name``) so that
objects built from them serialise by name.
"""

import numbers
from typing import Any, Callable, Optional

import keras

from tfrank import ops

_PACKAGE = "tfrank"

for _fn in (ops.identity, ops.inverse, ops.pow_minus_1, ops.log2_inverse, ops.ln_inverse, ops.is_greater_equal_1):
    keras.saving.register_keras_serializable(package=_PACKAGE)(_fn)


def check_topn(topn, owner: str, required: bool = False) -> Optional[int]:
    """``topn`` as an int >= 1, or None (the whole list) unless ``required``; ValueError naming the value otherwise."""
    if topn is None:
        if required:
            raise ValueError(f"topn=None: {owner} needs a cut-off, an integer >= 1")
        return None
    if isinstance(topn, bool) or not isinstance(topn, numbers.Integral) or topn < 1:
        raise ValueError(f"topn={topn!r}: {owner} needs topn to be None (the whole list) or an integer >= 1")
    return int(topn)


def check_count(value, name: str, owner: str, meaning: str = "an int >= 1") -> int:
    """``value`` as an int >= 1 (a sample size, a number of levels); ValueError naming it and ``meaning`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: {owner} needs {meaning}")
    return value


def check_positive(value, name: str, owner: str) -> float:
    """``value`` as a float > 0 (a temperature, say); ValueError naming the value otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name}={value!r}: {owner} needs {name} > 0")
    return float(value)


def serialize_fn(fn: Optional[Callable], default: Optional[Callable] = None) -> Any:
    """Keras config of a gain, discount or positive function; None for ``default`` (or None)."""
    if fn is None or fn is default:
        return None
    return keras.saving.serialize_keras_object(fn)


def deserialize_fn(config: Any, default: Optional[Callable] = None) -> Optional[Callable]:
    """The function of ``serialize_fn``'s config: ``default`` for None; callables pass through."""
    if config is None:
        return default
    if callable(config):
        return config
    return keras.saving.deserialize_keras_object(config)
