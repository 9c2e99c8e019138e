"""tfrank: TensorFlow-native learning-to-rank.

Ranking losses and metrics as Keras objects (TF Ranking's names and numbers, also under TF Ranking's own names in
``tfrank.keras``), ranking lists built in ``tf.data`` (MovieLens, ELWC, LibSVM), the tutorial's model and a feature
model that beats the popularity prior, baselines with honest statistics, SavedModel export for TF Serving, and the
training run behind ``bin/train.py`` (one process or a ``tf.distribute`` cluster).
"""

from tfrank import (
    baselines,
    data,
    dnn_models,
    export,
    feature_models,
    keras,
    layers,
    losses,
    metrics,
    models,
    ops,
    optimizers,
    training,
)

__version__ = "0.1.0"

__all__ = ["baselines", "data", "dnn_models", "export", "feature_models", "keras", "layers", "losses", "metrics",
           "models", "ops", "optimizers", "training"]
