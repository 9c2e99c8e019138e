"""Loading Keras models saved by TF Ranking code: its classes are registered as ``tensorflow_ranking>ClassName``."""

import os
from typing import Any, Dict, Optional, Union

import keras

from tfrank.keras import losses, metrics, utils

_PACKAGE = "tensorflow_ranking"


def custom_objects() -> Dict[str, Any]:
    """``{"tensorflow_ranking>ClassName": tfrank class}`` for TF Ranking's losses, lambda weights, metrics and gain /
    discount functions, to pass to ``keras.saving.load_model(path, custom_objects=...)``.

    Functions are also mapped by their bare names (``"log2_inverse"``), which is how tf.keras 2.15 writes the
    ``gain_fn`` and ``rank_discount_fn`` of a metric; and ``"Functional"`` / ``"Sequential"`` map to Keras 3's
    model classes, which tf.keras 2.15 ``.keras`` files name by a module (``keras.src.engine``) Keras 3 lacks.
    The optimizer's slots of such a file are not restored (Keras 3 warns and skips them); weights, loss and
    metrics are.

    >>> custom_objects()["tensorflow_ranking>NDCGMetric"].__module__
    'tfrank.metrics.ranking'
    """
    return _tf_ranking_objects()


def _tf_ranking_objects() -> Dict[str, Any]:
    # A second name: load_model's argument `custom_objects` (Keras' name for it) hides the public function.
    objects = {}
    for module in (losses, metrics):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and not name.startswith("Ranking"):
                objects[f"{_PACKAGE}>{name}"] = value
    for name in utils.__all__:
        objects[f"{_PACKAGE}>{name}"] = getattr(utils, name)
        objects[name] = getattr(utils, name)
    objects.update({"Functional": keras.Model, "Sequential": keras.Sequential})
    return objects


def load_model(
    filepath: Union[str, os.PathLike], custom_objects: Optional[Dict[str, Any]] = None, compile: bool = True, **kwargs
) -> keras.Model:
    """``keras.saving.load_model`` for a ``.keras`` file written by TF Ranking code on tf.keras 2.15.

    Passes :func:`custom_objects` (plus the caller's) and repairs what Keras 3 reads differently from such a file:
    a compile config without ``steps_per_execution`` (tf.keras 2.15 writes null, with which Keras 3 cannot
    ``fit`` or ``evaluate``) gets Keras' default, 1.
    """
    objects = {**_tf_ranking_objects(), **(custom_objects or {})}
    model = keras.saving.load_model(filepath, custom_objects=objects, compile=compile, **kwargs)
    if compile and getattr(model, "steps_per_execution", 1) is None:
        model.steps_per_execution = 1
    return model

