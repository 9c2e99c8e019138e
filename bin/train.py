"""Trains, evaluates and exports MovieLens ranking models: python bin/train.py --loss=pairwise_hinge.

`--loss=mse,pairwise_hinge` trains one model per loss and prints a comparison table (the Keras-RS tutorial's
experiment in one command).
"""

import os
import sys

import _quiet_tensorflow  # noqa: E402  (first: TensorFlow without start-up noise)
from absl import app, flags, logging  # noqa: E402

from tfrank import training  # noqa: E402
from tfrank.data import MovieLensUnavailableError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("loss", ["pairwise_hinge"], "Registered loss name(s), comma separated; one model per loss. "
                  "See tfrank.losses.names().")
flags.DEFINE_list("metrics", list(training.DEFAULT_METRICS), "Metrics to report; '@k' sets the cut-off.")
flags.DEFINE_enum("dataset", "movielens/100k", training.DATASETS, "MovieLens ratings to rank.")
flags.DEFINE_string("movielens_path", os.environ.get("TFRANK_MOVIELENS_DIR"),
                    "Local GroupLens files (folder or zip); default $TFRANK_MOVIELENS_DIR, else TFDS.")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir when the data comes from TFDS.")
flags.DEFINE_integer("list_size", 5, "Movies per training and evaluation list.")
flags.DEFINE_integer("num_lists_per_user", 50, "Training lists sampled per user.")
flags.DEFINE_integer("eval_lists_per_user", 1, "Validation and test lists sampled per user.")
flags.DEFINE_integer("embedding_dim", 32, "User and movie embedding size.")
flags.DEFINE_integer("batch_size", 1024, "Lists per training batch.")
flags.DEFINE_integer("epochs", 5, "Passes over the training lists.")
flags.DEFINE_float("learning_rate", None,
                   f"Optimizer learning rate. Adagrad default: {training.POINTWISE_LEARNING_RATE} for pointwise "
                   f"losses (mse, sigmoid_cross_entropy), {training.RANKING_LEARNING_RATE} for ranking losses (the "
                   "tutorial's 0.1 under-trains TF-Ranking-scaled losses); other optimizers: Keras's default.")
flags.DEFINE_enum("optimizer", "adagrad", training.OPTIMIZERS, "Optimizer.")
flags.DEFINE_float("ema_momentum", None,
                   "Evaluate and export a moving average of the weights with this momentum; 0 turns it off. "
                   f"Default: {training.RANKING_EMA_MOMENTUM} for ranking losses, off for pointwise losses.")
flags.DEFINE_integer("seed", 42, "Seed of the split, the list sampling, the shuffles and the initial weights.")
flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard logs and results.json; a rerun resumes here.")
flags.DEFINE_string("export_dir", None, "SavedModel export base: <export_dir>/<version> for TF Serving.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # Keeps SavedModel's INFO lines out of the progress output.
    config = training.TrainConfig(
        losses=tuple(FLAGS.loss), metrics=tuple(FLAGS.metrics), dataset=FLAGS.dataset,
        movielens_path=FLAGS.movielens_path or None, tfds_data_dir=FLAGS.tfds_data_dir, list_size=FLAGS.list_size,
        num_lists_per_user=FLAGS.num_lists_per_user, eval_lists_per_user=FLAGS.eval_lists_per_user,
        embedding_dim=FLAGS.embedding_dim, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
        learning_rate=FLAGS.learning_rate, optimizer=FLAGS.optimizer, ema_momentum=FLAGS.ema_momentum,
        seed=FLAGS.seed,
        model_dir=FLAGS.model_dir, export_dir=FLAGS.export_dir)
    try:
        config.validate()
    except ValueError as error:  # Config fields are named after the flags.
        sys.exit(f"train.py: error: --{error}")
    try:
        training.run(config)
    except (MovieLensUnavailableError, FileNotFoundError) as error:
        sys.exit(f"train.py: error: {error}")
    except ModuleNotFoundError as error:
        if error.name != "importlib_resources":
            raise
        sys.exit(f"train.py: error: {error}")
    _quiet_tensorflow.exit_without_teardown()


if __name__ == "__main__":
    app.run(main)
