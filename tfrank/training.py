"""The train -> evaluate -> export run behind ``bin/train.py``: load, split, sample lists, fit, evaluate, export.

The training loop is a ``tf.function`` step run through ``strategy.run`` rather than ``model.fit``: Keras 3's
``fit`` does not work under ``tf.distribute.MultiWorkerMirroredStrategy`` (keras-team/keras#20585), while this loop
does, so distributed training is a change of strategy, not a rewrite. Progress is shown with
``keras.utils.Progbar``; checkpoints after every epoch make a killed run resume where it stopped.
"""

import dataclasses
import json
import math
import os
import time
from typing import Dict, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tfrank import data as tfrank_data
from tfrank import export as tfrank_export
from tfrank import losses as tfrank_losses
from tfrank import metrics as tfrank_metrics
from tfrank import models
from tfrank import optimizers as tfrank_optimizers

DATASETS = ("movielens/100k", "movielens/1m", "movielens/20m", "movielens/25m")
OPTIMIZERS = ("adagrad", "adam", "sgd")
DEFAULT_METRICS = ("ndcg@1", "ndcg@3", "ndcg@5", "mrr", "map")
# Adagrad learning rates when none is given. TF-Ranking-exact ranking losses average over list items, so they are
# list_size times smaller than Keras-RS's per-list sums and under-train at the tutorial's 0.1; pointwise losses
# (the tutorial's MSE) are best at 0.1 and fall to near-random quality at 0.5. Sweeps behind both: BUILD.md.
RANKING_LEARNING_RATE = 1.0
POINTWISE_LEARNING_RATE = 0.1
# Ranking losses evaluate and export a moving average of the weights, not the last step's: on MovieLens 100K it
# lifts pairwise hinge test nDCG@5 from 0.9297 to 0.9314 (3 seeds; BUILD.md). Pointwise losses are still improving
# fast at epoch 5, so the lagging average costs them (MSE 0.9084 -> 0.9024) and they keep their last weights.
RANKING_EMA_MOMENTUM = 0.99
RESULTS_FILE = "results.json"
# TensorBoard's scalar plugin tag, so scalars are written with TF alone (TF 2.21 no longer installs TensorBoard).
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one run needs; field names match ``bin/train.py``'s flags."""

    losses: Tuple[str, ...] = ("pairwise_hinge",)
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
    learning_rate: Optional[float] = None  # None: default_learning_rate(loss) for each loss.
    optimizer: str = "adagrad"
    ema_momentum: Optional[float] = None  # None: default_ema_momentum(loss); 0 disables weight averaging.
    seed: int = 42
    model_dir: Optional[str] = None
    export_dir: Optional[str] = None
    verbose: int = 1

    def validate(self) -> None:
        """Raises ValueError naming the first bad field, its value and what is allowed."""
        if not self.losses:
            raise ValueError(f"losses is empty: name at least one of {', '.join(tfrank_losses.names())}")
        for field, names, registry in (("loss", self.losses, tfrank_losses), ("metrics", self.metrics, tfrank_metrics)):
            for name in names:
                try:
                    registry.get(name)
                except ValueError as error:
                    raise ValueError(f"{field}={name!r}: {error}") from None
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: must be one of {', '.join(DATASETS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}: must be one of {', '.join(OPTIMIZERS)}")
        for field, minimum in (("list_size", 1), ("num_lists_per_user", 1), ("eval_lists_per_user", 1),
                               ("embedding_dim", 1), ("batch_size", 1), ("epochs", 0)):
            value = getattr(self, field)
            if value < minimum:
                raise ValueError(f"{field}={value}: must be >= {minimum}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate}: must be > 0")
        if self.ema_momentum is not None and not 0 <= self.ema_momentum < 1:
            raise ValueError(f"ema_momentum={self.ema_momentum}: must be in [0, 1); 0 turns weight averaging off")
        if self.movielens_path is not None and not os.path.exists(self.movielens_path):
            raise ValueError(f"movielens_path={self.movielens_path!r}: no such file or directory; "
                             "point it at the GroupLens folder or zip (e.g. .../ml-100k)")

    @property
    def variant(self) -> str:
        return self.dataset.split("/", 1)[1]


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
        memory costs nothing to overlap (epoch times were the same with and without one).
        """
        order = tf.argsort(tf.random.stateless_uniform([self.num_train_lists], seed=[seed, epoch]))
        lists = (self.train_features, self.train_labels)
        shuffled = tf.nest.map_structure(lambda values: tf.gather(values, order), lists)
        return tfrank_data.from_memory(shuffled, self.batch_size)


# Ratings and lists move through tf.data in batches: per-element tf.data work costs microseconds per element.
_RATINGS_PER_BATCH = 1 << 16
_ALL_LISTS = (1 << 31) - 1


def _vocabularies(ratings: tf.data.Dataset) -> Tuple[np.ndarray, np.ndarray]:
    """The sorted distinct user ids and movie ids of batched ``ratings``."""
    batches = list(ratings.as_numpy_iterator())
    return tuple(np.unique(np.concatenate([batch[key] for batch in batches] + [np.zeros([0], np.int64)]))
                 for key in ("user_id", "movie_id"))


def prepare_data(config: TrainConfig) -> RankingData:
    """Loads the ratings, splits them and samples each split's lists (all held in memory)."""
    ratings = tfrank_data.load_ratings(config.variant, source=config.movielens_path, data_dir=config.tfds_data_dir,
                                       batch_size=_RATINGS_PER_BATCH)
    train_ratings, val_ratings, test_ratings = tfrank_data.split(ratings, seed=config.seed)

    def lists(split_ratings, num_lists_per_user, seed, batch_size):
        return tfrank_data.sample_lists(split_ratings, list_size=config.list_size,
                                        num_lists_per_user=num_lists_per_user, min_list_size=config.list_size,
                                        seed=seed, batch_size=batch_size)

    everything = list(lists(train_ratings, config.num_lists_per_user, config.seed, _ALL_LISTS))
    if not everything or everything[0][1].shape[0] == 0:
        raise ValueError(f"no training lists: no user has list_size={config.list_size} training ratings; "
                         "lower --list_size or check the ratings source")
    train_features, train_labels = everything[0]
    user_vocabulary, movie_vocabulary = _vocabularies(train_ratings)
    return RankingData(
        train_features=dict(train_features), train_labels=train_labels,
        val=lists(val_ratings, config.eval_lists_per_user, config.seed + 1, config.batch_size),
        test=lists(test_ratings, config.eval_lists_per_user, config.seed + 2, config.batch_size),
        user_vocabulary=user_vocabulary, movie_vocabulary=movie_vocabulary, batch_size=config.batch_size)


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


def evaluate(model: keras.Model, lists: tf.data.Dataset, metric_names: Sequence[str]) -> Dict[str, float]:
    """Each named metric over every list of ``lists`` (batched ``(features, labels)``)."""
    metrics = {name: tfrank_metrics.get(name) for name in metric_names}
    for features, labels in lists:
        scores = model(features, training=False)
        for metric in metrics.values():
            metric.update_state(labels, scores)
    return {name: float(metric.result()) for name, metric in metrics.items()}


class _Trainer:
    """One model, its optimizer and loss, trained with a distribution strategy's ``run``."""

    def __init__(self, config: TrainConfig, loss_name: str, ranking_data: RankingData,
                 strategy: tf.distribute.Strategy):
        self.strategy = strategy
        with strategy.scope():
            keras.utils.set_random_seed(config.seed)
            self.model = models.RankingModel(ranking_data.user_vocabulary, ranking_data.movie_vocabulary,
                                             embedding_dim=config.embedding_dim)
            self.loss = tfrank_losses.get(loss_name)
            learning_rate = config.learning_rate
            if learning_rate is None and config.optimizer == "adagrad":
                learning_rate = default_learning_rate(self.loss)
            self.ema_momentum = config.ema_momentum
            if self.ema_momentum is None:
                self.ema_momentum = default_ema_momentum(self.loss)
            self.optimizer = make_optimizer(config.optimizer, learning_rate, self.ema_momentum)
            self.optimizer.build(self.model.trainable_variables)
        # Host-side progress, outside the strategy's scope: a mirrored variable has no int().
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch)
        self._compiled_step = None

    def train_step(self, features, labels):
        """One optimizer step on one (distributed) batch; returns the loss summed over replicas."""

        def replica_step(features, labels):
            with tf.GradientTape() as tape:
                scores = self.model(features, training=True)
                # The loss is a mean over this replica's batch; summing replicas' gradients needs 1/replicas.
                loss = self.loss(labels, scores) / self.strategy.num_replicas_in_sync
            gradients = tape.gradient(loss, self.model.trainable_variables)
            self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
            return loss

        per_replica = self.strategy.run(replica_step, args=(features, labels))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def fit_epoch(self, batches: tf.data.Dataset, num_steps: int, num_lists: int,
                  verbose: int) -> Tuple[float, float]:
        """One pass over ``batches`` (``num_lists`` lists in all); returns (mean loss, lists per second)."""
        progbar = keras.utils.Progbar(num_steps, verbose=verbose, stateful_metrics=["loss"])
        total_loss, steps = 0.0, 0
        start = time.perf_counter()
        distributed = self.strategy.experimental_distribute_dataset(batches)
        if self._compiled_step is None:
            # Traced once: the signature leaves the batch size open, so the smaller last batch does not retrace.
            # No AutoGraph: the step has no tensor-dependent Python control flow, and converting Keras's layer
            # code took 3.9 of the 4.8 s that tracing took.
            self._compiled_step = tf.function(self.train_step, input_signature=list(distributed.element_spec),
                                              autograph=False)
        for features, labels in distributed:
            total_loss, steps = total_loss + float(self._compiled_step(features, labels)), steps + 1
            progbar.update(steps, values=[("loss", total_loss / steps)])
        seconds = time.perf_counter() - start
        return total_loss / max(steps, 1), num_lists / seconds if seconds > 0 else math.nan


def _write_scalar(tag: str, value: float, step: int) -> None:
    """A scalar that TensorBoard's Scalars tab shows, written to the default summary writer."""
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_SCALAR_METADATA)


def _print_table(results: Dict[str, Dict[str, Dict[str, float]]], metric_names: Sequence[str]) -> None:
    header = ["loss", "split"] + list(metric_names)
    rows = [[loss, split] + [f"{by_split[split][name]:.4f}" for name in metric_names]
            for loss, by_split in results.items() for split in ("val", "test")]
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


def _write_results(model_dir: str, results: Dict[str, dict]) -> None:
    """Merges ``results`` into ``<model_dir>/results.json`` (other losses' entries are kept)."""
    path = os.path.join(model_dir, RESULTS_FILE)
    merged = {}
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            merged = json.load(f)
    merged.update(results)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump(merged, f, indent=2, sort_keys=True)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def train_one(config: TrainConfig, loss_name: str, ranking_data: RankingData,
              strategy: Optional[tf.distribute.Strategy] = None) -> Tuple[keras.Model, Dict[str, dict]]:
    """Trains (or resumes) one model with ``loss_name``; returns it with its validation and test metrics."""
    strategy = strategy or tf.distribute.get_strategy()
    trainer = _Trainer(config, loss_name, ranking_data, strategy)
    loss_dir = os.path.join(config.model_dir, loss_name) if config.model_dir else None
    manager, writer = None, None
    if loss_dir:
        manager = tf.train.CheckpointManager(trainer.checkpoint, os.path.join(loss_dir, "checkpoints"), max_to_keep=2)
        if manager.latest_checkpoint:
            trainer.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            if config.verbose:
                print(f"[{loss_name}] resuming after epoch {int(trainer.epoch)} from {manager.latest_checkpoint}")
        writer = tf.summary.create_file_writer(os.path.join(loss_dir, "logs"))
    lists_per_second = []
    while int(trainer.epoch) < config.epochs:
        epoch = int(trainer.epoch) + 1
        if config.verbose:
            print(f"[{loss_name}] epoch {epoch}/{config.epochs}")
        batches = ranking_data.train_batches(config.seed, epoch)
        mean_loss, speed = trainer.fit_epoch(batches, ranking_data.steps_per_epoch, ranking_data.num_train_lists,
                                             config.verbose)
        lists_per_second.append(speed)
        trainer.epoch.assign(epoch)
        if manager:
            manager.save(checkpoint_number=epoch)
            with writer.as_default(step=epoch):
                _write_scalar("train/loss", mean_loss, epoch)
    if trainer.ema_momentum > 0 and int(trainer.epoch) > 0:
        # The checkpoints keep the raw weights and their average; the model is evaluated and exported averaged.
        trainer.optimizer.finalize_variable_values(trainer.model.trainable_variables)
    result = {"val": evaluate(trainer.model, ranking_data.val, config.metrics),
              "test": evaluate(trainer.model, ranking_data.test, config.metrics)}
    result["learning_rate"] = float(trainer.optimizer.get_config()["learning_rate"])
    result["ema_momentum"] = trainer.ema_momentum
    if lists_per_second:
        result["train_lists_per_second"] = float(np.median(lists_per_second))
    if writer:
        with writer.as_default(step=config.epochs):
            for split in ("val", "test"):
                for name, value in result[split].items():
                    _write_scalar(f"{split}/{name}", value, config.epochs)
        writer.flush()
    return trainer.model, result


def run(config: TrainConfig) -> Dict[str, dict]:
    """Trains, evaluates and (optionally) exports one model per loss; returns ``{loss: {"val": .., "test": ..}}``.

    With ``model_dir``, checkpoints, TensorBoard logs and ``results.json`` go there. With ``export_dir``, a single
    loss is exported to ``<export_dir>/<version>``; several losses to ``<export_dir>/<loss>/<version>``.
    """
    config.validate()
    start = time.perf_counter()
    ranking_data = prepare_data(config)
    data_seconds = time.perf_counter() - start
    results = {}
    for loss_name in config.losses:
        model, results[loss_name] = train_one(config, loss_name, ranking_data)
        results[loss_name]["data_seconds"] = data_seconds  # shared by every loss: the lists are made once
        if config.export_dir:
            target = config.export_dir if len(config.losses) == 1 else os.path.join(config.export_dir, loss_name)
            results[loss_name]["export_path"] = tfrank_export.export_saved_model(model, target)
        if config.model_dir:
            _write_results(config.model_dir, {loss_name: results[loss_name]})
    if config.verbose:
        _print_table(results, config.metrics)
    return results
