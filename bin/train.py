"""Trains, evaluates and exports MovieLens ranking models: python bin/train.py --loss=pairwise_hinge.

`--loss=mse,pairwise_hinge` trains one model per loss and prints a comparison table (the Keras-RS tutorial's
experiment in one command); `--dataset=synthetic` runs it on generated ratings, with no data files or download.
Every error is one line on stderr and a non-zero exit status.
"""

import os

import _cli  # noqa: E402
import _quiet_tensorflow  # noqa: E402  (first: TensorFlow without start-up noise)
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from tfrank import distribute, file_input, losses, metrics, stream_input, training  # noqa: E402
from tfrank.data import MovieLensUnavailableError  # noqa: E402

_DEFAULTS = training.TrainConfig()
PROGRAM = os.path.basename(__file__)
FLAGS = flags.FLAGS
flags.DEFINE_list("loss", list(_DEFAULTS.loss), "Loss name(s), comma separated; one model per loss. One of: "
                  f"{', '.join(losses.names())}.")
flags.DEFINE_list("metrics", list(_DEFAULTS.metrics), "Metrics to report, comma separated; '@k' sets the cut-off "
                  f"(ndcg@5). One of: {', '.join(metrics.names())}.")
flags.DEFINE_string("dataset", _DEFAULTS.dataset, f"Ratings to rank: {', '.join(training.DATASETS)}. 'synthetic' "
                    "generates MovieLens 100K-shaped ratings from --seed (no files, no download).")
flags.DEFINE_string("movielens_path", os.environ.get("TFRANK_MOVIELENS_DIR", _DEFAULTS.movielens_path),
                    "Local GroupLens files (folder or zip); empty or 'tfds': TFDS. Default: $TFRANK_MOVIELENS_DIR "
                    "if set, else TFDS.")
flags.DEFINE_string("tfds_data_dir", _DEFAULTS.tfds_data_dir, "TFDS data_dir when the data comes from TFDS.")
flags.DEFINE_integer("list_size", _DEFAULTS.list_size, "Movies per training and evaluation list.")
flags.DEFINE_integer("num_lists_per_user", _DEFAULTS.num_lists_per_user, "Training lists sampled per user.")
flags.DEFINE_integer("eval_lists_per_user", _DEFAULTS.eval_lists_per_user, "Validation and test lists per user.")
flags.DEFINE_integer("embedding_dim", _DEFAULTS.embedding_dim, "User and movie embedding size.")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Lists per training batch.")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Passes over the training lists (>= 1). A rerun on a --model_dir "
                     "with more epochs continues its training.")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate,
                   f"Optimizer learning rate. Adagrad default: {training.POINTWISE_LEARNING_RATE} for pointwise "
                   f"losses (mse, sigmoid_cross_entropy), {training.RANKING_LEARNING_RATE} for ranking losses (the "
                   "tutorial's 0.1 under-trains TF-Ranking-scaled losses); other optimizers: Keras's default. A run "
                   "whose loss becomes NaN stops and says to lower it.")
flags.DEFINE_string("optimizer", _DEFAULTS.optimizer, f"Optimizer: {', '.join(training.OPTIMIZERS)}.")
flags.DEFINE_float("ema_momentum", _DEFAULTS.ema_momentum,
                   "Evaluate and export a moving average of the weights with this momentum; 0 turns it off. "
                   f"Default: {training.RANKING_EMA_MOMENTUM} for ranking losses, off for pointwise losses.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the split, the list sampling, the shuffles and the initial "
                     "weights (and of the ratings with --dataset=synthetic).")
flags.DEFINE_boolean("deterministic", _DEFAULTS.deterministic,
                     "TensorFlow op determinism: the same command gives bit-identical numbers on the same machine. "
                     "--nodeterministic turns it off (it costs little here; BUILD.md).")
flags.DEFINE_string("model_dir", _DEFAULTS.model_dir,
                    "The run's config, checkpoints (after every epoch; the last two kept), TensorBoard logs and "
                    "results.json. A rerun with the same flags resumes it (a larger --epochs continues training) or "
                    "reports a finished run; other flags are refused unless --overwrite. One process at a time "
                    "(run.lock).")
flags.DEFINE_boolean("overwrite", _DEFAULTS.overwrite,
                     "Start again on a --model_dir that holds a run: removes its config, checkpoints, logs and "
                     "results first (exports are kept).")
flags.DEFINE_string("export_dir", _DEFAULTS.export_dir,
                    "SavedModel exports, always <export_dir>/<loss>/<version> (one folder per loss, also for a "
                    "single loss; the next version each run); point TF Serving's model_base_path at "
                    "<export_dir>/<loss>.")
flags.DEFINE_string("distribution_strategy", _DEFAULTS.distribution_strategy,
                    f"{', '.join(distribute.STRATEGIES)}. off: one process, as without distribution. one_device, "
                    "mirrored: the GPUs of this machine (mirrored: all of them). multi_worker_mirrored: data "
                    "parallel over the workers in $TF_CONFIG; start the same command on every worker (the chief, "
                    "else worker 0, writes --model_dir and --export_dir, which every worker must reach). "
                    "parameter_server: the chief task in $TF_CONFIG coordinates asynchronous steps of its 'worker' "
                    "tasks on variables held by its 'ps' tasks (not partitioned); the same command on a worker or "
                    "ps task serves until it is stopped. --batch_size is the global batch.")
flags.DEFINE_integer("verbose", _DEFAULTS.verbose, "0: only errors; 1: progress (one line per epoch when stdout "
                     "is not a terminal) and the results table.")
flags.DEFINE_enum("input", _DEFAULTS.input, list(stream_input.INPUTS),
                  "Where the training lists come from. memory: every worker loads every rating and builds every list. "
                  "stream: each worker reads the ratings as a stream and builds only the lists of its share of the "
                  "users (hashed by user id); not with parameter_server.")
flags.DEFINE_string("model", _DEFAULTS.model, f"Ranking model: {', '.join(training.MODELS)}. features: ids, "
                    "regularised biases and embeddings, and feature tables built from the training ratings and the "
                    "movies' genres; tutorial: the Keras-RS tutorial's model (ids only).")
flags.DEFINE_string("train_path", _DEFAULTS.train_path, "--dataset=libsvm: a LibSVM/LETOR text file; "
                    "--dataset=elwc: TFRecord files of ELWC protos (a glob). The training lists, cut or padded to "
                    "--list_size.")
flags.DEFINE_string("valid_path", _DEFAULTS.valid_path, "--dataset=libsvm|elwc: the validation lists (whole).")
flags.DEFINE_string("test_path", _DEFAULTS.test_path, "--dataset=libsvm|elwc: the test lists (whole).")
flags.DEFINE_integer("num_features", _DEFAULTS.num_features, "--dataset=libsvm|elwc: the number of per-item "
                     "numerical features (LibSVM indices 1..N; 136 for MSLR-WEB and TF Ranking's examples).")
flags.DEFINE_string("feature_prefix", _DEFAULTS.feature_prefix, "--dataset=elwc: the items' numerical features are "
                    "<feature_prefix>1 ... <feature_prefix><num_features>.")
flags.DEFINE_string("label_key", _DEFAULTS.label_key, "--dataset=elwc: the items' int64 label feature.")

def main(argv):
    if len(argv) > 1:
        _cli.fail(PROGRAM, f"unexpected arguments: {' '.join(argv[1:])}; flags are written --name=value")
    logging.set_verbosity(logging.ERROR)  # Keeps SavedModel's INFO and TensorFlow's warnings out of the output.
    # Empty means TFDS, also when $TFRANK_MOVIELENS_DIR is set (the library would fall back to it).
    movielens_path = FLAGS.movielens_path or "tfds"
    if FLAGS.dataset in (training.SYNTHETIC, *file_input.DATASETS) and not FLAGS["movielens_path"].present:
        movielens_path = None  # $TFRANK_MOVIELENS_DIR does not apply to generated ratings or to data files
    config = training.TrainConfig(
        loss=tuple(FLAGS.loss), metrics=tuple(FLAGS.metrics), dataset=FLAGS.dataset, movielens_path=movielens_path,
        tfds_data_dir=FLAGS.tfds_data_dir, list_size=FLAGS.list_size, num_lists_per_user=FLAGS.num_lists_per_user,
        eval_lists_per_user=FLAGS.eval_lists_per_user, embedding_dim=FLAGS.embedding_dim,
        batch_size=FLAGS.batch_size, epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate,
        optimizer=FLAGS.optimizer, ema_momentum=FLAGS.ema_momentum, seed=FLAGS.seed, model_dir=FLAGS.model_dir,
        export_dir=FLAGS.export_dir, verbose=FLAGS.verbose, deterministic=FLAGS.deterministic,
        overwrite=FLAGS.overwrite, distribution_strategy=FLAGS.distribution_strategy, input=FLAGS.input,
        model=FLAGS.model, train_path=FLAGS.train_path, valid_path=FLAGS.valid_path, test_path=FLAGS.test_path,
        num_features=FLAGS.num_features, feature_prefix=FLAGS.feature_prefix, label_key=FLAGS.label_key)
    try:
        config.validate()
    except ValueError as error:  # Config fields are named after the flags.
        _cli.fail(PROGRAM, f"--{error}")
    if config.epochs == 0:
        _cli.fail(PROGRAM, "--epochs=0: must be >= 1; a run trains at least one epoch (tfrank.training.run with "
                  "epochs=0 evaluates an untrained model)")
    try:
        training.run(config)
    except MovieLensUnavailableError as error:
        _cli.fail(PROGRAM, f"{error} Or train on generated ratings with --dataset=synthetic.")
    except (training.RunError, ValueError, OSError) as error:  # OSError: e.g. FileNotFoundError, PermissionError
        _cli.fail(PROGRAM, str(error))
    except tf.errors.OpError as error:  # raised lazily while a tf.data pipeline is read, e.g. a malformed line
        _cli.fail(PROGRAM, training.first_error_line(error))
    _quiet_tensorflow.exit_without_teardown()


if __name__ == "__main__":
    app.run(main, flags_parser=_cli.parse_flags)
