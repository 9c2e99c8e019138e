"""TF Ranking's ``tfr.keras`` names for tfrank: ``import tfrank as tfr`` and TF Ranking Keras code runs unchanged.

``tfr.keras.losses`` and ``tfr.keras.metrics`` hold TF Ranking 0.5.5's class names, ``RankingLossKey`` /
``RankingMetricKey``, its ``get`` factories and ``default_keras_metrics()``; ``tfr.keras.utils`` its gain and
discount functions. Every name is an alias of tfrank's one definition in ``tfrank.losses`` / ``tfrank.metrics`` /
``tfrank.ops``. ``load_model(path)`` (or ``keras.saving.load_model`` with ``custom_objects()``) loads models that
TF Ranking code saved with ``tf.keras``.

>>> import tfrank as tfr
>>> tfr.keras.losses.PairwiseHingeLoss is tfr.losses.PairwiseHingeLoss
True
"""

from tfrank.keras import losses, metrics, utils
from tfrank.keras._saving import custom_objects, load_model

__all__ = ["custom_objects", "load_model", "losses", "metrics", "utils"]
