"""The train -> evaluate -> export run behind ``bin/train.py``: load, split, sample lists, fit, evaluate, export.

The training loop is a ``tf.function`` step run through ``strategy.run`` rather than ``model.fit``: Keras 3's
``fit`` does not work under ``tf.distribute.MultiWorkerMirroredStrategy`` (keras-team/keras#20585), while this loop
does, so distributed training is a change of strategy, not a rewrite: ``distribution_strategy`` names it
(:mod:`tfrank.distribute`), and with several replicas each one reads only its slice of every global batch.

A run users can trust:
  - it fails loud: a NaN or infinite training loss, weight or score stops the run with :class:`TrainingDivergedError`
    before anything of the broken model is checkpointed or exported;
  - the same config gives the same numbers, bit for bit, on the same machine (``deterministic=True``), except with
    ``parameter_server``, whose workers update the variables asynchronously;
  - ``model_dir`` holds one run: its config (``run_config.json``), a checkpoint after every epoch per loss (the
    last two kept), TensorBoard logs and ``results.json``. A rerun resumes that run only when it asks for the same
    training (``epochs`` may grow); anything else stops with :class:`RunMismatchError` unless ``overwrite`` starts
    again. A lock file keeps a second process out (:class:`ModelDirLockedError`), and a damaged checkpoint falls
    back to the newest intact one.
"""

import contextlib
import dataclasses
import glob
import json
import math
import os
import re
import shutil
import socket
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

try:
    import fcntl
except ImportError:  # not on Windows: the pid and host in the lock file are then the only check
    fcntl = None

import keras
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import summary_pb2
from tensorflow.python.framework import config as tf_config
from tensorflow.python.training import checkpoint_state_pb2

from tfrank import _processes, distribute, dnn_models, feature_models, file_input, models, stream_input
from tfrank import data as tfrank_data
from tfrank import export as tfrank_export
from tfrank import layers as tfrank_layers
from tfrank import losses as tfrank_losses
from tfrank import metrics as tfrank_metrics
from tfrank import optimizers as tfrank_optimizers
from tfrank.data._tfdata import ALL_ROWS, ROWS_PER_BATCH

SYNTHETIC = "synthetic"
DATASETS = ("movielens/100k", "movielens/1m", "movielens/20m", "movielens/25m", SYNTHETIC) + file_input.DATASETS
OPTIMIZERS = ("adagrad", "adam", "sgd")
# --model: "tutorial" is tfrank.models.RankingModel (the Keras-RS tutorial's); "features" is
# tfrank.feature_models.FeatureRankingModel over ids and feature tables built from the training ratings.
TUTORIAL_MODEL = "tutorial"
FEATURE_MODEL = "features"
MODELS = (TUTORIAL_MODEL, FEATURE_MODEL)
DEFAULT_METRICS = ("ndcg@1", "ndcg@3", "ndcg@5", "mrr", "map")
# Adagrad learning rates when none is given. TF-Ranking-exact ranking losses average over list items, so they are
# list_size times smaller than Keras-RS's per-list sums and under-train at the tutorial's 0.1; pointwise losses
# (the tutorial's MSE) are best at 0.1 and fall to near-random quality at a few times that (sweeps: BUILD.md).
RANKING_LEARNING_RATE = 1.0
POINTWISE_LEARNING_RATE = 0.1
# Ranking losses evaluate and export a moving average of the weights, not the last step's: it lifts their test
# quality (BUILD.md). Pointwise losses are still improving fast at the last epoch, so the lagging average costs them
# and they keep their last weights.
RANKING_EMA_MOMENTUM = 0.99
# Adagrad's learning rate for the DNN of libsvm and elwc runs, TF Ranking's in its DNN examples: the ranking losses'
# 1.0 makes that network's losses jump by orders of magnitude from epoch to epoch.
DNN_LEARNING_RATE = 0.05
RESULTS_FILE = "results.json"
RUN_CONFIG_FILE = "run_config.json"
LOCK_FILE = "run.lock"
# Fields that may change between a run and its continuation: they do not change what is trained (epochs may only
# grow, which the checkpoints check), or they say where things are read from or written to.
RESUMABLE_FIELDS = ("epochs", "metrics", "verbose", "movielens_path", "tfds_data_dir", "model_dir", "export_dir",
                    "overwrite", "deterministic", "distribution_strategy", "input")
# TensorBoard's scalar plugin tag, so scalars are written with TF alone (TF 2.21 no longer installs TensorBoard).
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()
_CHECKPOINT_PREFIX = "ckpt"
# What a collective op raises when a peer dies: MultiWorkerMirroredStrategy's health checks abort the collectives.
_PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                  tf.errors.DeadlineExceededError)


class RunError(RuntimeError):
    """A run that cannot go on; the message is one line naming the cause and the fix."""


class TrainingDivergedError(RunError):
    """The training loss, the weights or the scores became NaN or infinite."""


class RunMismatchError(RunError):
    """``model_dir`` holds a run trained with a different config than the one asked for."""


class ModelDirLockedError(RunError):
    """Another live process is running on the same ``model_dir``."""


class CheckpointError(RunError):
    """The checkpoints in ``model_dir`` are damaged and none of them can be restored."""


class WorkerLostError(RunError):
    """A worker of a multi-worker run stopped or became unreachable; restarting the cluster resumes the run."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one run needs; each field is the ``bin/train.py`` flag of the same name, and its default.

    Attributes:
      loss: registered loss names (``tfrank.losses.names()``); one model is trained per loss.
      metrics: metric names reported on the validation and test lists; ``@k`` sets the cut-off (``ndcg@5``).
      dataset: ``movielens/100k``, ``movielens/1m``, ``movielens/20m``, ``movielens/25m``, or ``synthetic``
        (MovieLens 100K-shaped ratings generated from ``seed``; no files or download needed).
      movielens_path: local GroupLens files (folder or zip) for a MovieLens ``dataset``; ``"tfds"`` reads TFDS;
        None reads ``$TFRANK_MOVIELENS_DIR`` when it is set, else TFDS.
      tfds_data_dir: TFDS ``data_dir`` when the ratings come from TFDS.
      list_size: movies per training and evaluation list.
      num_lists_per_user: training lists sampled per user.
      eval_lists_per_user: validation and test lists sampled per user.
      embedding_dim: user and movie embedding size (for ``model="features"``: the factorisation's rank).
      batch_size: lists per training batch.
      epochs: passes over the training lists; a rerun on ``model_dir`` with more epochs continues training. 0
        evaluates the untrained model (a random-scores baseline).
      learning_rate: the optimizer's learning rate; None gives Adagrad ``default_learning_rate(loss)`` per loss and
        other optimizers Keras's default.
      optimizer: ``adagrad``, ``adam`` or ``sgd``.
      ema_momentum: evaluate and export a moving average of the weights with this momentum; 0 turns it off, None
        gives ``default_ema_momentum(loss)`` per loss.
      seed: seeds the split, the list sampling, the per-epoch shuffles and the initial weights.
      model_dir: where the run keeps its config, checkpoints, TensorBoard logs and ``results.json``; None saves none.
      export_dir: SavedModels go to ``<export_dir>/<loss>/<version>``; None exports nothing.
      verbose: 0 prints nothing; 1 prints progress (a bar on a terminal, one line per epoch otherwise) and the
        results table.
      deterministic: TensorFlow op determinism during the run, so that the same config gives bit-identical numbers
        on the same machine.
      overwrite: start again on a ``model_dir`` that holds a run: its config, checkpoints, logs and results are
        removed first (exports are kept; the new run exports the next version).
      distribution_strategy: ``off`` (one process, TensorFlow's default strategy), ``one_device``, ``mirrored``
        (the devices of this machine), ``multi_worker_mirrored`` (synchronous, over the workers in ``TF_CONFIG``)
        or ``parameter_server`` (asynchronous steps of the ``TF_CONFIG`` workers, coordinated by its chief);
        ``batch_size`` is the global batch, split evenly over synchronous replicas. A run may be resumed under
        another strategy.
      input: where the training lists come from. ``memory``: every worker loads every rating and builds every list
        (the global batches are those of one process). ``stream``: each worker reads the ratings as a stream and
        builds only the lists of its share of the users (:mod:`tfrank.stream_input`: the batches differ from
        ``memory``'s with several workers, not with one); not with ``parameter_server``. A run may be resumed with
        the other input.
      model: ``features`` (:class:`tfrank.feature_models.FeatureRankingModel`: a ridge factorisation of the
        training ratings plus an MLP over the movies' genres and the training ratings' per-user and per-movie
        statistics, all built from the training split only) or ``tutorial`` (:class:`tfrank.models.RankingModel`,
        the Keras-RS tutorial's, ids only). Not used by ``libsvm`` and ``elwc``, whose model is always
        :class:`tfrank.dnn_models.DNNRankingModel`.
      train_path, valid_path, test_path: with ``dataset="libsvm"`` (a LibSVM/LETOR text file each) or ``"elwc"``
        (TFRecord files of ELWC protos, a glob each): the training, validation and test lists
        (:mod:`tfrank.file_input`); training lists are cut or padded to ``list_size``, evaluation lists are whole.
      num_features: the per-item numerical features of ``libsvm`` and ``elwc`` data (feature indices 1..N).
      feature_prefix: ELWC feature names are ``<feature_prefix>1`` ... ``<feature_prefix><num_features>``.
      label_key: the ELWC items' int64 label feature.
    """

    loss: Tuple[str, ...] = ("pairwise_hinge",)
    metrics: Tuple[str, ...] = DEFAULT_METRICS
    dataset: str = "movielens/100k"
    movielens_path: Optional[str] = None
    tfds_data_dir: Optional[str] = None
    list_size: int = 5
    num_lists_per_user: int = 50
    eval_lists_per_user: int = 1
    embedding_dim: int = 32
    batch_size: int = 1024
    epochs: int = 5
    learning_rate: Optional[float] = None
    optimizer: str = "adagrad"
    ema_momentum: Optional[float] = None
    seed: int = 42
    model_dir: Optional[str] = None
    export_dir: Optional[str] = None
    verbose: int = 1
    deterministic: bool = True
    overwrite: bool = False
    distribution_strategy: str = distribute.OFF
    input: str = stream_input.MEMORY
    model: str = FEATURE_MODEL
    train_path: Optional[str] = None
    valid_path: Optional[str] = None
    test_path: Optional[str] = None
    num_features: Optional[int] = None
    feature_prefix: str = file_input.DEFAULT_FEATURE_PREFIX
    label_key: str = file_input.DEFAULT_LABEL_KEY

    def validate(self) -> None:
        """Raises ValueError naming the first bad field, its value and what is allowed."""
        if not self.loss:
            raise ValueError(f"loss is empty: name at least one of {', '.join(tfrank_losses.names())}")
        for field, names, registry in (("loss", self.loss, tfrank_losses), ("metrics", self.metrics, tfrank_metrics)):
            for name in names:
                try:
                    registry.get(name)
                except ValueError as error:
                    raise ValueError(f"{field}={name!r}: {error}") from None
        if len(set(self.loss)) != len(self.loss):
            raise ValueError(f"loss={','.join(self.loss)}: names a loss twice; name each loss once")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: must be one of {', '.join(DATASETS)}")
        if self.dataset in file_input.DATASETS:
            file_input.check_config(self.dataset, {field: getattr(self, field) for field in
                                                   ("train_path", "valid_path", "test_path")},
                                    self.num_features, self.feature_prefix, self.label_key, self.input)
        distribute.check_name(self.distribution_strategy)
        stream_input.check_strategy(self.input, self.distribution_strategy)
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r}: must be one of {', '.join(MODELS)}")
        if self.input == stream_input.STREAM and self.model == FEATURE_MODEL:
            raise ValueError(f"input={self.input} with model={self.model}: the feature model's tables are fit on every "
                             "training rating, which a streaming worker does not hold; use model=tutorial with "
                             "input=stream, or input=memory")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}: must be one of {', '.join(OPTIMIZERS)}")
        for field, minimum in (("list_size", 1), ("num_lists_per_user", 1), ("eval_lists_per_user", 1),
                               ("embedding_dim", 1), ("batch_size", 1), ("epochs", 0)):
            value = getattr(self, field)
            if value < minimum:
                raise ValueError(f"{field}={value}: must be >= {minimum}")
        if self.learning_rate is not None and not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate={self.learning_rate}: must be a finite number > 0")
        if self.ema_momentum is not None and not 0 <= self.ema_momentum < 1:
            raise ValueError(f"ema_momentum={self.ema_momentum}: must be in [0, 1); 0 turns weight averaging off")
        if self.movielens_path not in (None, "tfds") and not os.path.exists(self.movielens_path):
            raise ValueError(f"movielens_path={self.movielens_path!r}: no such file or directory; "
                             "point it at the GroupLens folder or zip (e.g. .../ml-100k)")

    @property
    def variant(self) -> str:
        """The MovieLens variant of ``dataset`` (``100k`` for ``movielens/100k``); ``synthetic`` for synthetic."""
        return self.dataset.split("/", 1)[-1]


@dataclasses.dataclass
class RankingData:
    """The training lists (in memory, shuffled per epoch), batched evaluation lists, and the vocabularies."""

    train_features: Dict[str, tf.Tensor]  # user_id [num_lists], movie_id [num_lists, list_size]
    train_labels: tf.Tensor  # [num_lists, list_size]
    val: tf.data.Dataset
    test: tf.data.Dataset
    user_vocabulary: np.ndarray
    movie_vocabulary: np.ndarray
    batch_size: int
    # The feature model's tables, built from the training ratings (feature_models.feature_tables); None otherwise.
    feature_tables: Optional[feature_models.FeatureTables] = None

    @property
    def num_train_lists(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_train_lists / self.batch_size)

    def train_batches(self, seed: int, epoch: int) -> tf.data.Dataset:
        """The training lists of one epoch, in a stateless random order drawn from ``(seed, epoch)``, batched.

        Lists come grouped by user, so unshuffled batches would hold only a few users each. Seeding by epoch
        makes a resumed run see the same batches as an uninterrupted one. The lists are gathered in the epoch's
        order at once and sliced into batches by tf.data, with no per-list tf.data work and no prefetch: slicing
        memory costs nothing worth overlapping.
        """
        order = self._epoch_order(seed, epoch)
        lists = (self.train_features, self.train_labels)
        shuffled = tf.nest.map_structure(lambda values: tf.gather(values, order), lists)
        return tfrank_data.from_memory(shuffled, self.batch_size)

    def _epoch_order(self, seed: int, epoch: int) -> tf.Tensor:
        return tf.argsort(tf.random.stateless_uniform([self.num_train_lists], seed=[seed, epoch]))

    def replica_batches(self, seed: int, epoch: int, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        """This input pipeline's share of the epoch's global batches: ``(features, labels, global_lists)`` elements.

        Each global batch of :meth:`train_batches` is split into ``num_replicas_in_sync`` consecutive slices whose
        sizes differ by at most one list; the pipeline yields the slices of its own replicas, step by step, in
        replica order (the order a strategy hands a pipeline's elements to its local replicas), and gathers only
        those lists. ``global_lists`` is the size of the slice's global batch, which scales each replica's loss so
        that the replicas' summed gradients are the single-process gradient of that batch.

        Raises:
          ValueError: the last global batch has fewer lists than there are replicas.
        """
        replicas = input_context.num_replicas_in_sync
        local = replicas // input_context.num_input_pipelines
        first = input_context.input_pipeline_id * local
        starts = np.arange(0, self.num_train_lists, self.batch_size)
        sizes = np.minimum(self.batch_size, self.num_train_lists - starts)
        if sizes[-1] < replicas:
            raise ValueError(
                f"batch_size={self.batch_size}: the {self.num_train_lists} training lists leave a last batch of "
                f"{sizes[-1]} lists for {replicas} replicas; choose a batch_size that leaves at least {replicas} "
                "(or none) in the last batch")
        bounds = starts[:, None] + (np.arange(replicas + 1)[None, :] * sizes[:, None]) // replicas
        own = np.arange(first, first + local)
        begin, end = bounds[:, own].reshape(-1), bounds[:, own + 1].reshape(-1)  # [steps * local], step-major
        width = int(np.max(end - begin))
        # Padded to the widest slice with repeats of the slice's last list, cut back to its length per element.
        positions = np.minimum(begin[:, None] + np.arange(width)[None, :], end[:, None] - 1)
        take = tf.gather(self._epoch_order(seed, epoch), positions)
        lists = tf.nest.map_structure(lambda values: tf.gather(values, take), (self.train_features, self.train_labels))
        lengths = tf.constant(end - begin, tf.int32)
        global_lists = tf.constant(np.repeat(sizes, local), tf.int32)

        def cut(padded, length, global_size):
            features, labels = tf.nest.map_structure(lambda values: values[:length], padded)
            return features, labels, global_size

        return tf.data.Dataset.from_tensor_slices((lists, lengths, global_lists)).map(cut)


def _vocabularies(ratings: tf.data.Dataset) -> Tuple[np.ndarray, np.ndarray]:
    """The sorted distinct user ids and movie ids of batched ``ratings``."""
    batches = list(ratings.as_numpy_iterator())
    return tuple(np.unique(np.concatenate([batch[key] for batch in batches] + [np.zeros([0], np.int64)]))
                 for key in ("user_id", "movie_id"))


def load_config_ratings(config: TrainConfig) -> tf.data.Dataset:
    """The batched ratings that ``config`` names: MovieLens (local files or TFDS), or generated from the seed."""
    if config.dataset == SYNTHETIC:
        return tfrank_data.synthetic.ratings_dataset(seed=config.seed, batch_size=ROWS_PER_BATCH)
    return tfrank_data.load_ratings(config.variant, source=config.movielens_path, data_dir=config.tfds_data_dir,
                                    batch_size=ROWS_PER_BATCH)


def prepare_data(config: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None
                 ) -> "RankingData | stream_input.StreamedRankingData":
    """Loads the ratings, splits them and samples each split's lists (all held in memory).

    With ``config.input == "stream"``: the vocabularies from a streamed pass and, given the ``strategy``, the
    training lists of this process's input pipelines only, and the evaluation lists on the chief (without a
    strategy, each when first used).
    """
    if config.dataset in file_input.DATASETS:
        return _prepare_file_data(config)
    if config.input == stream_input.STREAM:
        ranking_data = _prepare_streamed_data(config)
        if strategy is not None:
            ranking_data.build(strategy)
            if distribute.is_chief(strategy):  # the chief alone evaluates
                ranking_data.build_eval_lists()
        return ranking_data
    train_ratings, val_ratings, test_ratings = tfrank_data.split(load_config_ratings(config), seed=config.seed)
    user_vocabulary, movie_vocabulary = _vocabularies(train_ratings)

    def lists(split_ratings, num_lists_per_user, seed, batch_size):
        return tfrank_data.sample_lists(split_ratings, list_size=config.list_size,
                                        num_lists_per_user=num_lists_per_user, min_list_size=config.list_size,
                                        seed=seed, batch_size=batch_size)

    # One batch holds every training list.
    everything = list(lists(train_ratings, config.num_lists_per_user, config.seed, ALL_ROWS))
    if not everything or everything[0][1].shape[0] == 0:
        raise ValueError(f"no training lists: no user has list_size={config.list_size} training ratings; "
                         "lower --list_size or check the ratings source")
    train_features, train_labels = everything[0]
    tables = None
    if config.model == FEATURE_MODEL:  # from the training split only: the tables are model inputs
        tables = _feature_tables(config, train_ratings, user_vocabulary, movie_vocabulary)
    return RankingData(
        train_features=dict(train_features), train_labels=train_labels,
        val=lists(val_ratings, config.eval_lists_per_user, config.seed + 1, config.batch_size),
        test=lists(test_ratings, config.eval_lists_per_user, config.seed + 2, config.batch_size),
        user_vocabulary=user_vocabulary, movie_vocabulary=movie_vocabulary, batch_size=config.batch_size,
        feature_tables=tables)


def _feature_tables(config: TrainConfig, train_ratings: tf.data.Dataset, user_vocabulary: np.ndarray,
                    movie_vocabulary: np.ndarray) -> feature_models.FeatureTables:
    """The feature model's tables from the batched training ratings and the movies' genres.

    Generated ratings (``synthetic``) take the genres planted with them (``tfrank.data.synthetic.movie_features``).
    """
    batches = list(train_ratings.as_numpy_iterator())
    columns = {key: np.concatenate([batch[key] for batch in batches] + [np.zeros([0], dtype)])
               for key, dtype in (("user_id", np.int64), ("movie_id", np.int64), ("user_rating", np.float32))}
    if config.dataset == SYNTHETIC:
        movies = tfrank_data.synthetic.movie_features(seed=config.seed)  # the genres planted in those ratings
    else:
        movies = tfrank_data.load_movie_features(config.variant, source=config.movielens_path,
                                                 data_dir=config.tfds_data_dir)
    return feature_models.feature_tables(columns["user_id"], columns["movie_id"], columns["user_rating"],
                                         user_vocabulary, movie_vocabulary, genres=movies["genres"],
                                         genre_movie_ids=movies["movie_id"], factor_dim=config.embedding_dim,
                                         seed=config.seed)


def build_model(config: TrainConfig, ranking_data: "RankingData") -> keras.Model:
    """The ranking model ``config.model`` names, over ``ranking_data``'s vocabularies (and feature tables)."""
    if config.dataset in file_input.DATASETS:
        return dnn_models.DNNRankingModel(_file_feature_names(config))
    if config.model == TUTORIAL_MODEL:
        return models.RankingModel(ranking_data.user_vocabulary, ranking_data.movie_vocabulary,
                                   embedding_dim=config.embedding_dim)
    if config.model == FEATURE_MODEL:
        if ranking_data.feature_tables is None:
            raise ValueError(f"model={config.model!r}: the data has no feature tables; build it with "
                             "prepare_data(config) for this config")
        return feature_models.FeatureRankingModel(
            ranking_data.user_vocabulary, ranking_data.movie_vocabulary, embedding_dim=config.embedding_dim,
            tables=ranking_data.feature_tables)
    raise ValueError(f"model={config.model!r}: must be one of {', '.join(MODELS)}")


def _file_feature_names(config: TrainConfig) -> List[str]:
    return file_input.feature_names(config.dataset, config.num_features, config.feature_prefix)


def _prepare_file_data(config: TrainConfig) -> RankingData:
    """The lists of ``config.train_path``, ``valid_path`` and ``test_path`` (libsvm or elwc): no vocabularies."""
    read = dict(dataset=config.dataset, num_features=config.num_features, feature_prefix=config.feature_prefix,
                label_key=config.label_key)
    train_features, train_labels = file_input.load_training_lists(path=config.train_path,
                                                                  list_size=config.list_size, **read)
    no_ids = np.zeros([0], np.int64)
    return RankingData(
        train_features=train_features, train_labels=train_labels,
        val=file_input.evaluation_lists(path=config.valid_path, batch_size=config.batch_size, **read),
        test=file_input.evaluation_lists(path=config.test_path, batch_size=config.batch_size, **read),
        user_vocabulary=no_ids, movie_vocabulary=no_ids, batch_size=config.batch_size)


def _prepare_streamed_data(config: TrainConfig) -> stream_input.StreamedRankingData:
    if config.dataset == SYNTHETIC:  # generated in memory, sorted by user
        ratings = tfrank_data.synthetic.ratings_dataset(seed=config.seed, batch_size=ROWS_PER_BATCH)
        sorted_by_user = True
    else:
        ratings, sorted_by_user = tfrank_data.streaming.stream_movielens_ratings(
            config.variant, config.movielens_path, config.tfds_data_dir)
    return stream_input.StreamedRankingData(
        ratings, sorted_by_user, list_size=config.list_size, num_lists_per_user=config.num_lists_per_user,
        eval_lists_per_user=config.eval_lists_per_user, seed=config.seed, batch_size=config.batch_size)


def default_learning_rate(loss: keras.losses.Loss) -> float:
    """Adagrad's learning rate for ``loss`` when none is given: 0.1 for pointwise losses, else 1.0."""
    return POINTWISE_LEARNING_RATE if isinstance(loss, tfrank_losses.PointwiseLoss) else RANKING_LEARNING_RATE


def default_ema_momentum(loss: keras.losses.Loss) -> float:
    """Weight-averaging momentum for ``loss`` when none is given: 0 (off) for pointwise losses, else 0.99."""
    return 0.0 if isinstance(loss, tfrank_losses.PointwiseLoss) else RANKING_EMA_MOMENTUM


def make_optimizer(name: str, learning_rate: Optional[float] = None,
                   ema_momentum: float = 0.0) -> keras.optimizers.Optimizer:
    """A Keras optimizer by flag name; ``learning_rate=None`` keeps Keras's default for it.

    With ``ema_momentum > 0`` the optimizer also keeps a moving average of the weights, which
    ``finalize_variable_values`` copies into the model when training ends.
    """
    classes = {"adagrad": tfrank_optimizers.Adagrad, "adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    if name not in classes:
        raise ValueError(f"optimizer={name!r}: must be one of {', '.join(OPTIMIZERS)}")
    kwargs = {} if learning_rate is None else {"learning_rate": learning_rate}
    if ema_momentum > 0:
        kwargs.update(use_ema=True, ema_momentum=ema_momentum)
    return classes[name](**kwargs)


def _evaluate(model: keras.Model, lists: tf.data.Dataset, metric_names: Sequence[str]) -> Tuple[Dict[str, float], bool]:
    """Each named metric over every list of ``lists``, and whether every score was finite."""
    metrics = {name: tfrank_metrics.get(name) for name in metric_names}
    finite = True
    for features, labels in lists:
        scores = model(features, training=False)
        finite = finite and bool(tf.reduce_all(tf.math.is_finite(scores)))
        for metric in metrics.values():
            metric.update_state(labels, scores)
    return {name: float(metric.result()) for name, metric in metrics.items()}, finite


def evaluate(model: keras.Model, lists: tf.data.Dataset, metric_names: Sequence[str]) -> Dict[str, float]:
    """Each named metric over every list of ``lists`` (batched ``(features, labels)``)."""
    return _evaluate(model, lists, metric_names)[0]


def _all_finite(variables: Sequence[tf.Variable]) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v)))) for v in variables)


def _diverged(loss_name: str, what: str, where: str, learning_rate: float) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"[{loss_name}] {what} at {where}: training diverged at learning rate {learning_rate:g}; lower "
        "--learning_rate (nothing of the diverged epoch was checkpointed or exported)")


def _sharded_tables(model: keras.Model) -> Dict[str, List[str]]:
    """``{variable path: [device of each shard]}`` for the variables of ``model`` sharded over parameter servers."""
    return {variable.path: [shard.device for shard in variable.value.variables]
            for variable in model.variables if tfrank_layers.is_sharded(variable)}


def _check_sharded_tables_trainable(model: keras.Model, optimizer: keras.optimizers.Optimizer, name: str) -> None:
    """Raises ValueError when ``model`` has tables sharded over parameter servers that ``optimizer`` cannot update."""
    if isinstance(optimizer, tfrank_optimizers.Adagrad):
        return
    sharded = [variable.path for variable in model.trainable_variables if tfrank_layers.is_sharded(variable)]
    if sharded:
        raise ValueError(f"optimizer={name!r}: cannot update the embedding tables sharded over the parameter servers "
                         f"({', '.join(sharded)}); use --optimizer=adagrad with --distribution_strategy="
                         f"{distribute.PARAMETER_SERVER}")


class _Trainer:
    """One model, its optimizer and loss, trained with a distribution strategy's ``run``."""

    def __init__(self, config: TrainConfig, loss_name: str, ranking_data: RankingData,
                 strategy: tf.distribute.Strategy):
        self.strategy = strategy
        self.loss_name = loss_name
        with strategy.scope():
            keras.utils.set_random_seed(config.seed)
            self.model = build_model(config, ranking_data)
            self.loss = tfrank_losses.get(loss_name)
            learning_rate = config.learning_rate
            if learning_rate is None and config.optimizer == "adagrad":
                learning_rate = (DNN_LEARNING_RATE if config.dataset in file_input.DATASETS
                                 else default_learning_rate(self.loss))
            self.ema_momentum = config.ema_momentum
            if self.ema_momentum is None:
                self.ema_momentum = default_ema_momentum(self.loss)
            self.optimizer = make_optimizer(config.optimizer, learning_rate, self.ema_momentum)
            _check_sharded_tables_trainable(self.model, self.optimizer, config.optimizer)
            self.optimizer.build(self.model.trainable_variables)
        self.learning_rate = float(self.optimizer.get_config()["learning_rate"])
        # Host-side progress, outside the strategy's scope: a mirrored variable has no int().
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch)
        self._compiled_step = None
        self.coordinator = None
        if distribute.is_coordinated(strategy):
            self.coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
            self._worker_lists = None

    def train_step(self, features, labels, *global_lists):
        """One optimizer step on one (distributed) batch; returns the global batch's mean loss.

        With several replicas each batch comes with ``global_lists`` (see :meth:`RankingData.replica_batches`).
        """

        def replica_step(features, labels, global_lists=None):
            with tf.GradientTape() as tape:
                scores = self.model(features, training=True)
                loss = self.loss(labels, scores)
                if hasattr(self.model, "penalty"):  # regularisation of the rows the batch reads
                    loss = loss + self.model.penalty(features)
                if global_lists is not None:
                    # The loss is a mean over this replica's slice; weighted by the slice's share of the global
                    # batch, the replicas' summed gradients are those of the global batch's mean.
                    share = tf.cast(tf.shape(labels)[0], loss.dtype) / tf.cast(global_lists, loss.dtype)
                    loss = loss * share
            # tfrank's gradients: a tape cannot differentiate a table sharded over parameter servers.
            gradients = tfrank_optimizers.gradients(tape, loss, self.model.trainable_variables)
            self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
            return loss

        per_replica = self.strategy.run(replica_step, args=(features, labels, *global_lists))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def distribute_epoch(self, ranking_data: "RankingData", seed: int, epoch: int):
        """The epoch's training batches as the strategy's distributed dataset.

        One replica takes the batches whole, as before distribution existed. Several replicas each read only their
        slices of every global batch, through ``distribute_datasets_from_function``. A coordinator (parameter
        servers) gets the list indices of each global batch instead (:meth:`_scheduled_epoch`).
        """
        if isinstance(ranking_data, stream_input.StreamedRankingData):
            ranking_data.build(self.strategy)  # a no-op once built
        if self.coordinator is not None:
            return self._scheduled_epoch(ranking_data, seed, epoch)
        if self.strategy.num_replicas_in_sync == 1:
            return self.strategy.experimental_distribute_dataset(ranking_data.train_batches(seed, epoch))
        return self.strategy.distribute_datasets_from_function(
            lambda input_context: ranking_data.replica_batches(seed, epoch, input_context))

    def _scheduled_epoch(self, ranking_data: "RankingData", seed: int, epoch: int) -> List[tf.Tensor]:
        """The epoch's global batches as list indices: a coordinator sends a worker only the indices of its step.

        Every worker holds the training lists once (a per-worker dataset) and gathers each scheduled batch from
        them, so each batch of the epoch is trained once, by whichever worker is free.
        """
        if self._worker_lists is None:
            lists = (ranking_data.train_features, ranking_data.train_labels)
            self._worker_lists = iter(self.coordinator.create_per_worker_dataset(
                lambda: tf.data.Dataset.from_tensors(lists).repeat()))

            def scheduled_step(worker_lists, indices):
                features, labels = next(worker_lists)
                return self.train_step(*tf.nest.map_structure(lambda values: tf.gather(values, indices),
                                                              (features, labels)))

            self._compiled_step = tf.function(scheduled_step, autograph=False)
        order = ranking_data._epoch_order(seed, epoch)
        return [order[start:start + ranking_data.batch_size]
                for start in range(0, ranking_data.num_train_lists, ranking_data.batch_size)]

    def fit_epoch(self, distributed, epoch: int, num_steps: int, num_lists: int,
                  progress: bool) -> Tuple[float, float]:
        """One pass over ``distributed`` batches (``num_lists`` lists in all); returns (mean loss, lists per second).

        Raises TrainingDivergedError at the first step whose loss is not finite (the loss comes to the host each
        step anyway, for the progress bar).
        """
        progbar = keras.utils.Progbar(num_steps, verbose=1, stateful_metrics=["loss"]) if progress else None
        total_loss, steps = 0.0, 0
        start = time.perf_counter()
        if self.coordinator is not None:
            # Asynchronous steps: the losses come back when the coordinator has run the whole epoch.
            scheduled = [self.coordinator.schedule(self._compiled_step, args=(self._worker_lists, indices))
                         for indices in distributed]
            self.coordinator.join()
            for steps, remote_loss in enumerate(scheduled, start=1):
                loss = float(remote_loss.fetch())
                if not math.isfinite(loss):
                    raise _diverged(self.loss_name, f"the training loss became {loss}",
                                    f"epoch {epoch}, step {steps}/{num_steps}", self.learning_rate)
                total_loss += loss
            if progbar:
                progbar.update(steps, values=[("loss", total_loss / max(steps, 1))])
            seconds = time.perf_counter() - start
            return total_loss / max(steps, 1), num_lists / seconds if seconds > 0 else math.nan
        if self._compiled_step is None:
            # Traced once: the signature leaves the batch size open, so the smaller last batch does not retrace.
            # No AutoGraph: the step has no tensor-dependent Python control flow, and converting Keras's layer
            # code is most of the tracing time.
            self._compiled_step = tf.function(self.train_step, input_signature=list(distributed.element_spec),
                                              autograph=False)
        for batch in distributed:
            loss = float(self._compiled_step(*batch))
            steps += 1
            if not math.isfinite(loss):
                raise _diverged(self.loss_name, f"the training loss became {loss}",
                                f"epoch {epoch}, step {steps}/{num_steps}", self.learning_rate)
            total_loss += loss
            if progbar:
                progbar.update(steps, values=[("loss", total_loss / steps)])
        seconds = time.perf_counter() - start
        return total_loss / max(steps, 1), num_lists / seconds if seconds > 0 else math.nan

    def averaged_weights(self) -> contextlib.AbstractContextManager:
        """A context in which the model holds the weights it is evaluated and exported with (the moving average)."""
        return _averaged_weights(self)

    def finalize(self) -> None:
        """Puts the weights that are evaluated and exported into the model for good."""
        if self.ema_momentum > 0 and int(self.epoch) > 0:
            # The checkpoints keep the raw weights and their average; the model is evaluated and exported averaged.
            self.optimizer.finalize_variable_values(self.model.trainable_variables)


@contextlib.contextmanager
def _averaged_weights(trainer: _Trainer) -> Iterator[None]:
    if not (trainer.ema_momentum > 0 and int(trainer.epoch) > 0):
        yield
        return
    # Finalizing also brings the optimizer's lazily kept averages up to date, with other rounding than training
    # would: its state is put back too, so that evaluating an epoch never changes what is trained.
    state = list(trainer.model.trainable_variables) + list(trainer.optimizer.variables)
    saved = [tf.identity(tf.convert_to_tensor(variable)) for variable in state]
    trainer.optimizer.finalize_variable_values(trainer.model.trainable_variables)
    try:
        yield
    finally:
        for variable, value in zip(state, saved):
            variable.assign(value)


def _write_scalar(tag: str, value: float, step: int) -> None:
    """A scalar that TensorBoard's Scalars tab shows, written to the default summary writer."""
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_SCALAR_METADATA)


def _print_table(results: Dict[str, Dict[str, Dict[str, float]]], metric_names: Sequence[str]) -> None:
    header = ["loss", "split"] + list(metric_names)
    rows = [[loss, split] + [f"{by_split[split][name]:.4f}" for name in metric_names]
            for loss, by_split in results.items() for split in ("val", "test")]
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def _write_json(path: str, value: Any) -> None:
    """Writes ``value`` as JSON to ``path`` atomically (a reader sees the old file or the new one)."""
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def _read_json(path: str) -> Optional[Any]:
    """The JSON in ``path``, None when there is no such file; a garbled file is a one-line CheckpointError."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            value = json.load(f)
    except (ValueError, UnicodeDecodeError) as error:
        value, problem = None, f"is not valid JSON ({error})"
    else:
        problem = None if isinstance(value, dict) else "does not hold a JSON object"
    if problem:
        raise CheckpointError(f"{path} {problem}; restore it, or pass --overwrite to start the run again, or a new "
                              "--model_dir")
    return value


# -- The run's files in model_dir ----------------------------------------------------------------------------------


def _checkpoint_dir(model_dir: str, loss_name: str) -> str:
    return os.path.join(model_dir, loss_name, "checkpoints")


def _checkpoint_epochs(checkpoint_dir: str) -> List[int]:
    """The epochs that have a checkpoint (an ``.index`` file) in ``checkpoint_dir``, newest first."""
    pattern = re.compile(rf"^{_CHECKPOINT_PREFIX}-(\d+)\.index$")
    names = os.listdir(checkpoint_dir) if os.path.isdir(checkpoint_dir) else []
    return sorted((int(m.group(1)) for m in map(pattern.match, names) if m), reverse=True)


def _identity(config: TrainConfig) -> Dict[str, Any]:
    """The config fields that define what a run trains (all but RESUMABLE_FIELDS), as JSON values."""
    stored = dataclasses.asdict(config)
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in stored.items() if name not in RESUMABLE_FIELDS}


def _flag_value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _check_same_run(config: TrainConfig, stored: Dict[str, Any], path: str) -> None:
    """Raises RunMismatchError naming every identity field whose value differs from the stored run's."""
    wanted = _identity(config)
    stored = {"model": TUTORIAL_MODEL, **stored}  # runs recorded before --model existed trained the tutorial's
    differences = [f"--{name}={_flag_value(wanted[name])} (the run has {_flag_value(stored.get(name))})"
                   for name in wanted if stored.get(name) != wanted[name]]
    if differences:
        raise RunMismatchError(
            f"--model_dir={config.model_dir} holds a run with other flags: {', '.join(differences)}; rerun with "
            f"that run's flags to continue it, or pass a new --model_dir, or --overwrite to replace it ({path})")


def _check_epochs(config: TrainConfig) -> None:
    """Raises RunMismatchError when a loss's checkpoints went past ``config.epochs``: a run is never shortened."""
    for loss_name in config.loss:
        reached = max(_checkpoint_epochs(_checkpoint_dir(config.model_dir, loss_name)), default=0)
        if reached > config.epochs:
            raise RunMismatchError(
                f"--epochs={config.epochs}: the run in --model_dir={config.model_dir} already trained {loss_name} "
                f"for {reached} epochs; pass --epochs={reached} or more to continue it, or a new --model_dir, or "
                "--overwrite to start again")


def _remove_run(model_dir: str, loss_names: Sequence[str]) -> None:
    """Removes a run's config, results, and the checkpoints and logs of ``loss_names`` from ``model_dir``."""
    stored = _read_json_quietly(os.path.join(model_dir, RUN_CONFIG_FILE))
    # Only loss folders: a damaged config must not name a folder outside model_dir.
    names = (set(loss_names) | set((stored or {}).get("loss", []))) & set(tfrank_losses.names())
    for name in names:
        shutil.rmtree(os.path.join(model_dir, name), ignore_errors=True)
    for name in (RUN_CONFIG_FILE, RESULTS_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(model_dir, name))


def _has_saved_training(model_dir: str, loss_names: Sequence[str]) -> bool:
    return os.path.exists(os.path.join(model_dir, RESULTS_FILE)) or any(
        _checkpoint_epochs(_checkpoint_dir(model_dir, name)) for name in loss_names)


def _read_json_quietly(path: str) -> Optional[Any]:
    try:
        return _read_json(path)
    except CheckpointError:
        return None


def _open_run(config: TrainConfig) -> Dict[str, dict]:
    """Checks that ``model_dir`` holds this run or none, records the config; returns the run's stored results."""
    model_dir = config.model_dir
    config_path = os.path.join(model_dir, RUN_CONFIG_FILE)
    if config.overwrite:
        _remove_run(model_dir, config.loss)
    stored = _read_json(config_path)
    if stored is not None and not _has_saved_training(model_dir, stored.get("loss", [])):
        stored = None  # a run that saved nothing (it stopped in its first epoch) has nothing to continue
    if stored is None:
        leftovers = [name for name in config.loss if _checkpoint_epochs(_checkpoint_dir(model_dir, name))]
        if leftovers:
            raise RunMismatchError(
                f"--model_dir={model_dir} has checkpoints of {', '.join(leftovers)} but no {RUN_CONFIG_FILE} "
                "saying how they were trained; pass a new --model_dir, or --overwrite to start again")
    else:
        _check_same_run(config, stored, config_path)
    _check_epochs(config)
    _write_json(config_path, {**_identity(config), "epochs": config.epochs})
    return _read_json(os.path.join(model_dir, RESULTS_FILE)) or {}


@contextlib.contextmanager
def _locked(model_dir: str) -> Iterator[None]:
    """Holds ``<model_dir>/run.lock`` while the run works on ``model_dir``; the file names this process and host.

    The lock is an exclusive ``flock`` on the file (released by the kernel when its holder dies), checked against the
    pid and host written in it. A lock left by a process that no longer runs on this host is taken over, and says so;
    a live holder, or a holder on another host (which this host cannot check), stops this run with
    ModelDirLockedError.
    """
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LOCK_FILE)
    host, pid = socket.gethostname(), os.getpid()
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            holder = _claim(descriptor, path)
        except BaseException:
            os.close(descriptor)
            raise
        if holder == "replaced":  # its holder removed the file between our open and our lock: open it again
            os.close(descriptor)
            continue
        if holder is not None:
            holder_pid, holder_host = holder
            # With flock, holding the lock proves its recorded holder gone (the kernel releases a dead process's
            # lock), even when its pid now names another process; without flock only the pid and host can tell.
            if fcntl is None and (holder_host != host or _processes.process_alive(holder_pid)):
                os.close(descriptor)
                raise _lock_error(model_dir, path, holder)
            print(f"taking over the stale lock {path} of process {holder_pid}, which no longer runs", file=sys.stderr)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps({"pid": pid, "host": host}).encode(), 0)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # before the unlock, so a waiting opener of this file sees it replaced
        os.close(descriptor)


def _claim(descriptor: int, path: str):
    """Locks the open lock file; returns its previous holder (pid, host), None, or "replaced"."""
    if fcntl is not None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _lock_error(os.path.dirname(path), path, _lock_holder(path)) from None
    try:
        if os.stat(path).st_ino != os.fstat(descriptor).st_ino:
            return "replaced"
    except FileNotFoundError:
        return "replaced"
    return _lock_holder(path)


def _lock_error(model_dir: str, path: str, holder: Optional[Tuple[int, str]]) -> ModelDirLockedError:
    who = f"process {holder[0]} on {holder[1]}" if holder else "another process"
    return ModelDirLockedError(
        f"--model_dir={model_dir} is in use by {who} ({path}); wait for it to finish or use another --model_dir "
        "(remove the lock file only if that process is gone)")


def _lock_holder(path: str) -> Optional[Tuple[int, str]]:
    try:
        with open(path) as f:
            holder = json.load(f)
        return int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _restore_latest(trainer: _Trainer, checkpoint_dir: str, verbose: int, writes: bool = True) -> Optional[str]:
    """Restores the newest checkpoint that reads back whole; returns its path, None when there is none.

    A damaged checkpoint (garbled ``checkpoint`` index, truncated ``.data`` or ``.index`` file) is reported in one
    line and the next older one is tried; when checkpoints exist but none restores, CheckpointError. Only with
    ``writes`` (the chief's restore) is the index rewritten and are damaged checkpoints deleted.
    """
    epochs = _checkpoint_epochs(checkpoint_dir)
    index_path = os.path.join(checkpoint_dir, "checkpoint")
    if os.path.exists(index_path):
        try:
            with open(index_path, "rb") as f:
                text_format.Parse(f.read().decode("utf-8"), checkpoint_state_pb2.CheckpointState())
        except (text_format.ParseError, UnicodeDecodeError) as error:
            print(f"warning: the checkpoint index {index_path} is garbled ({first_error_line(error)}); looking for the "
                  "newest intact checkpoint", file=sys.stderr)
    failures = []
    for epoch in epochs:
        prefix = os.path.join(checkpoint_dir, f"{_CHECKPOINT_PREFIX}-{epoch}")
        try:
            trainer.checkpoint.restore(prefix).assert_existing_objects_matched()
            if int(trainer.epoch) != epoch:
                raise ValueError(f"it holds epoch {int(trainer.epoch)}, not {epoch}")
        except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError, OSError) as error:
            # What a damaged file raises depends on where it is cut: reader, proto and restore errors alike.
            failures.append(prefix)
            print(f"warning: checkpoint {prefix} is damaged ({first_error_line(error)}); trying an older one",
                  file=sys.stderr)
            continue
        if not writes:
            return prefix
        intact = [os.path.join(checkpoint_dir, f"{_CHECKPOINT_PREFIX}-{e}") for e in epochs if e <= epoch]
        # The index names only intact checkpoints, so the manager neither trusts nor keeps the damaged ones.
        tf.compat.v1.train.update_checkpoint_state(checkpoint_dir, prefix, all_model_checkpoint_paths=intact[::-1])
        for damaged in failures:
            for path in glob.glob(damaged + ".*"):
                os.remove(path)
        if failures and verbose:
            print(f"resuming from the newest intact checkpoint {prefix}", file=sys.stderr)
        return prefix
    if failures:
        raise CheckpointError(
            f"no checkpoint in {checkpoint_dir} can be restored (damaged: {', '.join(failures)}); restore them, "
            "or pass --overwrite to start the run again, or a new --model_dir")
    if writes and os.path.exists(index_path):
        os.remove(index_path)  # an index without checkpoints would make the manager look for them
    return None


def first_error_line(error: BaseException) -> str:
    """The first non-empty line of an error's message (TensorFlow appends node and stack lines)."""
    text = error.message if isinstance(error, tf.errors.OpError) else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# -- Training --------------------------------------------------------------------------------------------------


def train_one(config: TrainConfig, loss_name: str, ranking_data: RankingData,
              strategy: Optional[tf.distribute.Strategy] = None,
              stored_result: Optional[dict] = None) -> Tuple[keras.Model, Dict[str, Any]]:
    """Trains (or resumes) one model with ``loss_name``; returns it with its validation and test metrics.

    With ``config.model_dir`` it checkpoints every epoch to ``<model_dir>/<loss>/checkpoints`` and resumes from the
    newest intact checkpoint; TensorBoard scalars (``train/loss`` and ``val/<metric>`` each epoch, ``test/<metric>``
    at the end) go to ``<model_dir>/<loss>/logs``. A model already trained for ``config.epochs`` epochs whose
    ``stored_result`` has every metric is not evaluated again: that result is returned. A model trained before this
    call is marked ``"already_trained": True`` in the result (and keeps the stored ``export_path``); nothing is
    written for it.

    Raises:
      TrainingDivergedError: a training loss, a weight or a score became NaN or infinite.
      CheckpointError: checkpoints exist but none can be restored.
    """
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)
    trainer = _Trainer(config, loss_name, ranking_data, strategy)
    loss_dir = os.path.join(config.model_dir, loss_name) if config.model_dir else None
    manager, writer = None, None
    if loss_dir:
        checkpoint_dir = _checkpoint_dir(config.model_dir, loss_name)
        restored = _restore_latest(trainer, checkpoint_dir, config.verbose, writes=chief)
        _check_workers_restored_one_epoch(strategy, int(trainer.epoch), checkpoint_dir)
        # Every worker saves (a save may need them all); only the chief's checkpoints are kept.
        manager = tf.train.CheckpointManager(trainer.checkpoint, distribute.write_dir(checkpoint_dir, strategy),
                                             max_to_keep=2 if chief else 1, checkpoint_name=_CHECKPOINT_PREFIX)
        if restored and int(trainer.epoch) >= config.epochs:
            stored = _has_metrics(stored_result, config.metrics) or not chief
            if config.verbose:
                print(f"[{loss_name}] already trained for {int(trainer.epoch)} epochs in {loss_dir}; "
                      + ("reporting its stored results" if stored else "evaluating it for the metrics asked for"))
            if stored:
                trainer.finalize()
                return trainer.model, {**(stored_result or {}), "epochs": int(trainer.epoch), "already_trained": True}
        elif restored and config.verbose:
            print(f"[{loss_name}] resuming after epoch {int(trainer.epoch)} from {restored}")
    lists_per_second = []
    progress = config.verbose > 0 and sys.stdout.isatty()
    while int(trainer.epoch) < config.epochs:
        epoch = int(trainer.epoch) + 1
        if progress:
            print(f"[{loss_name}] epoch {epoch}/{config.epochs}")
        batches = trainer.distribute_epoch(ranking_data, config.seed, epoch)
        mean_loss, speed = trainer.fit_epoch(batches, epoch, ranking_data.steps_per_epoch,
                                             ranking_data.num_train_lists, progress)
        lists_per_second.append(speed)
        if not _all_finite(trainer.model.trainable_variables):
            raise _diverged(loss_name, "a weight became NaN or infinite", f"the end of epoch {epoch}",
                            trainer.learning_rate)
        trainer.epoch.assign(epoch)
        val = None
        if writer is None and loss_dir and chief:
            writer = tf.summary.create_file_writer(os.path.join(loss_dir, "logs"))
        if writer:
            with trainer.averaged_weights():
                val, _ = _evaluate(trainer.model, ranking_data.val, config.metrics)
        if config.verbose and not progress:
            summary = "  ".join(f"val {name} {value:.4f}" for name, value in (val or {}).items())
            print(f"[{loss_name}] epoch {epoch}/{config.epochs}  loss {mean_loss:.4f}  {speed:,.0f} lists/s  "
                  f"{summary}".rstrip(), flush=True)
        if manager:
            manager.save(checkpoint_number=epoch)
            distribute.remove_temporary(checkpoint_dir, strategy)
        if writer:
            with writer.as_default(step=epoch):
                _write_scalar("train/loss", mean_loss, epoch)
                for name, value in val.items():
                    _write_scalar(f"val/{name}", value, epoch)
    trainer.finalize()
    if not _all_finite(trainer.model.trainable_variables):
        raise _diverged(loss_name, "an averaged weight is NaN or infinite", f"epoch {int(trainer.epoch)}",
                        trainer.learning_rate)
    result = {}
    # Evaluation is the chief's: the other workers hold the same weights and write nothing.
    for split, lists in (("val", ranking_data.val), ("test", ranking_data.test)) if chief else ():
        result[split], finite = _evaluate(trainer.model, lists, config.metrics)
        if not finite:
            raise _diverged(loss_name, f"the model's {split} scores are NaN or infinite",
                            f"epoch {int(trainer.epoch)}", trainer.learning_rate)
    result["epochs"] = int(trainer.epoch)
    result["learning_rate"] = trainer.learning_rate
    shards = _sharded_tables(trainer.model)
    if shards:
        result["sharded_tables"] = shards
    result["ema_momentum"] = trainer.ema_momentum
    if lists_per_second:
        result["train_lists_per_second"] = float(np.median(lists_per_second))
    elif loss_dir and int(trainer.epoch) > 0:  # trained before this call: the same model as the stored result's
        result["already_trained"] = True
        if stored_result and "export_path" in stored_result:
            result["export_path"] = stored_result["export_path"]
    if writer and lists_per_second:
        with writer.as_default(step=int(trainer.epoch)):
            for name, value in result["test"].items():
                _write_scalar(f"test/{name}", value, int(trainer.epoch))
    if writer:
        writer.flush()
        writer.close()
    return trainer.model, result


def _check_workers_restored_one_epoch(strategy: tf.distribute.Strategy, epoch: int, checkpoint_dir: str) -> None:
    """Raises CheckpointError on every worker unless all of them restored the same epoch (a no-op in one process)."""
    workers = distribute.count_across_workers(strategy, 1)
    if workers == 1:
        return
    disagree = distribute.count_across_workers(strategy, int(distribute.count_across_workers(strategy, epoch)
                                                              != epoch * workers))
    if disagree:
        raise CheckpointError(
            f"the workers restored different epochs from {checkpoint_dir} (this one: {epoch}); --model_dir must be "
            "one folder every worker reads (a shared filesystem or GCS), with the checkpoints the chief wrote")


def _has_metrics(result: Optional[dict], metric_names: Sequence[str]) -> bool:
    return bool(result) and all(name in result.get(split, {}) for split in ("val", "test") for name in metric_names)


@contextlib.contextmanager
def _op_determinism(enabled: bool) -> Iterator[None]:
    """TensorFlow op determinism inside the block, as it was outside (it is process-wide)."""
    # TensorFlow's public API can only turn determinism on; its internal switch (if present) restores the caller's.
    is_enabled = getattr(tf_config, "is_op_determinism_enabled", lambda: False)
    disable = getattr(tf_config, "disable_op_determinism", None)
    turned_on = enabled and not is_enabled()
    if turned_on:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if turned_on and disable is not None:
            disable()


def _export_target(config: TrainConfig, loss_name: str) -> str:
    return os.path.join(config.export_dir, loss_name)


def run(config: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict[str, dict]:
    """Trains, evaluates and (optionally) exports one model per loss; returns ``{loss: {"val": .., "test": ..}}``.

    With ``model_dir``, the run's config, checkpoints, TensorBoard logs and ``results.json`` (this run's results,
    one entry per loss) go there; see :class:`TrainConfig` for resuming. With ``export_dir``, each loss's model is
    exported to ``<export_dir>/<loss>/<version>`` (the next version), except a finished run's model that was already
    exported there. Without either, nothing is saved, and a verbose run says so.

    ``strategy`` defaults to the one ``config.distribution_strategy`` names. In a multi-worker cluster every worker
    calls ``run`` with the same config; the chief alone holds the lock, writes ``model_dir`` (other workers' checkpoints
    are temporary) and the exports, evaluates, prints and returns the results; the other workers return
    ``{loss: {"epochs": n}}``.

    Raises:
      ValueError: a bad config field, or data that yields no lists.
      RunError: the run diverged (TrainingDivergedError), ``model_dir`` holds another run (RunMismatchError) or is
        in use (ModelDirLockedError), or its checkpoints are damaged (CheckpointError), or a worker of a
        multi-worker run stopped (WorkerLostError).
    """
    config.validate()
    if strategy is None:
        strategy = distribute.strategy_from_name(config.distribution_strategy)
    chief = distribute.is_chief(strategy)
    with contextlib.ExitStack() as stack:
        stored_results, failure = {}, None
        if config.model_dir and chief:
            try:
                stack.enter_context(_locked(config.model_dir))
                stored_results = _open_run(config)
            except (RunError, OSError) as error:
                failure = error
        try:
            # The other workers wait here until the chief has checked (or replaced) the run, and stop when it stops.
            if distribute.count_across_workers(strategy, int(failure is not None)):
                raise failure or RunError(f"the chief stopped the run on --model_dir={config.model_dir}; its log "
                                          "says why")
            stack.enter_context(_op_determinism(config.deterministic))
            if config.deterministic:
                keras.utils.set_random_seed(config.seed)
            if not chief:
                config = dataclasses.replace(config, verbose=0)
            return _run(config, stored_results, strategy, chief)
        except _PEER_FAILURES as error:
            if distribute.task(strategy) is None:
                raise
            raise WorkerLostError(
                f"a worker of the cluster stopped or is unreachable ({first_error_line(error)}); start every worker "
                "again with the same command: the run resumes from its last checkpoint"
                + (f" in --model_dir={config.model_dir}" if config.model_dir else
                   " (none here: without --model_dir it starts over)")) from None


def _run(config: TrainConfig, stored_results: Dict[str, dict], strategy: tf.distribute.Strategy,
         chief: bool) -> Dict[str, dict]:
    start = time.perf_counter()
    ranking_data = prepare_data(config, strategy)
    data_seconds = time.perf_counter() - start
    if config.verbose and isinstance(ranking_data, stream_input.StreamedRankingData):
        print("training lists per input pipeline (input=stream): "
              + ", ".join(f"{count:,}" for count in ranking_data.lists_per_pipeline))
    results = {}
    for loss_name in config.loss:
        model, result = train_one(config, loss_name, ranking_data, strategy,
                                  stored_result=stored_results.get(loss_name))
        if not chief:
            results[loss_name] = {"epochs": result["epochs"]}
            continue
        already_trained = result.pop("already_trained", False)
        if not already_trained:
            result["data_seconds"] = data_seconds  # shared by every loss: the lists are made once
            if isinstance(ranking_data, stream_input.StreamedRankingData):
                result["train_lists_per_input_pipeline"] = ranking_data.lists_per_pipeline.tolist()
        if config.export_dir:
            target = _export_target(config, loss_name)
            previous = result.get("export_path") if already_trained else None
            if previous and os.path.dirname(previous) == target and os.path.isdir(previous):
                if config.verbose:
                    print(f"[{loss_name}] already exported to {previous}")
            else:
                result["export_path"] = tfrank_export.export_saved_model(model, target)
        results[loss_name] = result
        if config.model_dir:
            _write_json(os.path.join(config.model_dir, RESULTS_FILE), results)
    if config.verbose:
        _print_table(results, config.metrics)
        if not config.model_dir and not config.export_dir:
            print("nothing was saved: pass --model_dir to keep checkpoints, logs and results.json, and --export_dir "
                  "to export SavedModels")
    return results
