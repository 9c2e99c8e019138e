"""tfrank: TensorFlow-native learning-to-rank.

Ranking losses and metrics as Keras objects (TF Ranking's names and numbers), MovieLens ranking lists built in
``tf.data``, the tutorial's ranking model, SavedModel export for TF Serving, and the training run behind
``bin/train.py``.
"""

from tfrank import data, export, keras, losses, metrics, models, ops, optimizers, training

__version__ = "0.1.0"

__all__ = ["data", "export", "keras", "losses", "metrics", "models", "ops", "optimizers", "training"]
