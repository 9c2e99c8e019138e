"""Training lists streamed from the ratings and sharded by user over a strategy's input pipelines (``input="stream"``).

With ``input="memory"`` every worker loads every rating and builds every training list, then takes its slices of each
global batch. With ``input="stream"`` each input pipeline (``InputContext.input_pipeline_id`` of
``num_input_pipelines``: one per worker) reads the ratings as a stream, a batch at a time, and builds and holds only
the lists of its users: those whose :func:`tfrank.data.streaming.user_shards` is its id, the hash that
``stream_lists_sharded`` shards by. A user's lists are the ones ``sample_lists`` gives it and each user belongs to one
pipeline, so the pipelines' lists together are the memory input's, none lost or doubled. The vocabularies (every
training user and movie id, which every replica's tables need) come from a streaming pass over the ids.

Steps: synchronous replicas step together, but the pipelines hold different numbers of lists. The workers exchange
their counts once, after building (one collective). Each pipeline cuts its lists into steps of its share of the
global batch (its replicas' slices of ``batch_size``), and an epoch has the steps of the largest pipeline. A pipeline
that has run out gives each of its replicas one all-padding list per remaining step (``PADDING_LABEL``: every tfrank
loss gives it weight 0); a replica's slice of a pipeline's last lists is never empty either. Every worker knows each
step's real lists over all pipelines (``global_lists``, from the counts), which scales each replica's loss as the
memory input's does, so the replicas' summed gradient is that of the mean loss over the global batch's real lists.

Order: a pipeline keeps its lists sorted by user (each user's in list order), and each epoch shuffles them by the
stateless permutation drawn from ``(seed, epoch)``, as the memory input does with all lists: a resumed run sees the
same batches, and with one pipeline and one replica the batches are the memory input's, list for list.

Evaluation lists (validation and test) are built on first use, which only the chief makes, from a streamed split:
they are the memory input's.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfrank import data as tfrank_data
from tfrank import distribute
from tfrank.data import streaming
from tfrank.data._tfdata import ROWS_PER_BATCH
from tfrank.ops import PADDING_ID, PADDING_LABEL

MEMORY = "memory"
STREAM = "stream"
INPUTS = (MEMORY, STREAM)
# The strategies whose replicas read input pipelines of their own; a parameter-server coordinator instead hands any
# global batch to whichever worker is free, so it needs every list on every worker.
STREAM_STRATEGIES = (distribute.OFF, distribute.ONE_DEVICE, distribute.MIRRORED, distribute.MULTI_WORKER_MIRRORED)

_Lists = Tuple[Dict[str, tf.Tensor], tf.Tensor]


def check_strategy(input_name: str, strategy_name: str) -> None:
    """Raises ValueError when ``input_name`` is not an input or cannot run under the strategy ``strategy_name``."""
    if input_name not in INPUTS:
        raise ValueError(f"input={input_name!r}: must be one of {', '.join(INPUTS)}")
    if input_name == STREAM and strategy_name not in STREAM_STRATEGIES:
        raise ValueError(f"input=stream with distribution_strategy={strategy_name}: streamed input runs under "
                         f"{', '.join(STREAM_STRATEGIES)}; use input=memory with {strategy_name}")


class StreamedRankingData:
    """Training lists of this process's input pipelines only, streamed from ``ratings``; the evaluation lists on use.

    The same interface as :class:`tfrank.training.RankingData` (``train_batches``, ``replica_batches``,
    ``steps_per_epoch``, ``num_train_lists``, ``val``, ``test``, the vocabularies) once :meth:`build` (or
    :meth:`build_pipeline` for each pipeline and :meth:`set_lists_per_pipeline`) has run.

    Args:
      ratings: batches of ratings, read each time they are iterated (``stream_ratings``, say).
      sorted_by_user: whether ``ratings`` come in non-decreasing ``user_id`` order (grouping then holds a batch,
        else every rating of the pipeline's users).
      list_size, num_lists_per_user, eval_lists_per_user, seed, batch_size: as in ``TrainConfig``.

    Raises:
      tf.errors.InvalidArgumentError: a data check failed while the ids were read (a malformed line, say).
    """

    def __init__(self, ratings: tf.data.Dataset, sorted_by_user: bool, list_size: int, num_lists_per_user: int,
                 eval_lists_per_user: int, seed: int, batch_size: int):
        self.sorted_by_user = sorted_by_user
        self.list_size = list_size
        self.num_lists_per_user = num_lists_per_user
        self.eval_lists_per_user = eval_lists_per_user
        self.seed = seed
        self.batch_size = batch_size
        self._train_ratings, self._val_ratings, self._test_ratings = tfrank_data.stream_split(ratings, seed=seed)
        self.user_vocabulary, self.movie_vocabulary = streaming.stream_vocabularies(self._train_ratings)
        self._pipelines: Dict[int, _Lists] = {}  # each built pipeline's lists, and a padding list at the end
        self._num_pipelines: Optional[int] = None
        self._replicas = 1
        self.lists_per_pipeline: Optional[np.ndarray] = None
        self._val: Optional[tf.data.Dataset] = None
        self._test: Optional[tf.data.Dataset] = None

    # -- Building ---------------------------------------------------------------------------------------------

    def build_pipeline(self, input_context: tf.distribute.InputContext) -> int:
        """Streams the ratings and keeps the lists of the users of ``input_context``'s pipeline; returns their count."""
        pipelines, pipeline = input_context.num_input_pipelines, input_context.input_pipeline_id
        if self._num_pipelines not in (None, pipelines):
            raise ValueError(f"num_input_pipelines={pipelines}: the lists were built for {self._num_pipelines} "
                             "pipelines; build a new StreamedRankingData for another cluster")
        self._num_pipelines, self._replicas = pipelines, input_context.num_replicas_in_sync
        lists = streaming.stream_lists_of_shard(
            self._train_ratings, pipelines, pipeline, list_size=self.list_size,
            num_lists_per_user=self.num_lists_per_user, min_list_size=self.list_size, seed=self.seed,
            sorted_by_user=self.sorted_by_user, batch_size=ROWS_PER_BATCH)
        users, movies, labels = [np.zeros([0], np.int64)], [np.zeros([0, self.list_size], np.int64)], [
            np.zeros([0, self.list_size], np.float32)]
        for features, batch_labels in lists.as_numpy_iterator():
            users.append(features["user_id"]), movies.append(features["movie_id"]), labels.append(batch_labels)
        users, movies, labels = np.concatenate(users), np.concatenate(movies), np.concatenate(labels)
        # Sorted by user, as sample_lists gives them: the grouping's order (group_by_window's) is not reproducible.
        order = np.argsort(users, kind="stable")
        self._pipelines[pipeline] = (
            {"user_id": tf.constant(np.append(users[order], PADDING_ID)),
             "movie_id": tf.constant(np.concatenate([movies[order], np.full([1, self.list_size], PADDING_ID)]))},
            tf.constant(np.concatenate([labels[order], np.full([1, self.list_size], PADDING_LABEL, np.float32)])))
        return int(users.size)

    def set_lists_per_pipeline(self, counts: Sequence[int]) -> None:
        """Records every pipeline's list count (the built pipelines' must match); the steps follow from them.

        Raises:
          ValueError: no pipeline has a list, or the counts disagree with the built pipelines.
        """
        counts = np.asarray(counts, np.int64).reshape(-1)
        if self._num_pipelines is not None and counts.size != self._num_pipelines:
            raise ValueError(f"lists_per_pipeline has {counts.size} counts for {self._num_pipelines} pipelines")
        for pipeline, (_, labels) in self._pipelines.items():
            if counts[pipeline] != labels.shape[0] - 1:
                raise ValueError(f"lists_per_pipeline[{pipeline}]={counts[pipeline]}: pipeline {pipeline} built "
                                 f"{labels.shape[0] - 1} lists")
        if counts.sum() == 0:
            raise ValueError(f"no training lists: no user has list_size={self.list_size} training ratings; lower "
                             "--list_size or check the ratings source")
        self._num_pipelines = counts.size
        self.lists_per_pipeline = counts

    def build(self, strategy: tf.distribute.Strategy) -> None:
        """Builds the lists of this process's input pipelines under ``strategy`` and agrees on the counts with the
        other workers (a collective every worker must reach); a no-op once built.

        Raises:
          ValueError: a coordinated strategy (parameter servers), or no training lists.
        """
        if self.lists_per_pipeline is not None:
            return
        if distribute.is_coordinated(strategy):
            raise ValueError(f"input=stream with {type(strategy).__name__}: streamed input runs under "
                             f"{', '.join(STREAM_STRATEGIES)}; use input=memory with parameter servers")
        contexts: List[tf.distribute.InputContext] = []
        if strategy.num_replicas_in_sync == 1:
            contexts.append(tf.distribute.InputContext())
        else:
            # The strategy names this process's pipelines only when it asks for their datasets: ask with empty ones.
            strategy.distribute_datasets_from_function(
                lambda input_context: contexts.append(input_context) or tf.data.Dataset.range(0))
        counts = np.zeros([contexts[0].num_input_pipelines], np.int64)
        for input_context in contexts:
            counts[input_context.input_pipeline_id] = self.build_pipeline(input_context)
        self.set_lists_per_pipeline(_sum_across_workers(strategy, counts))

    def build_eval_lists(self) -> None:
        """Builds the validation and test lists now rather than on first use (two streamed passes)."""
        self._val, self._test = self.val, self.test

    # -- Serving -------------------------------------------------------------------------------------------------

    @property
    def num_train_lists(self) -> int:
        return int(self._counts().sum())

    @property
    def steps_per_epoch(self) -> int:
        """Steps of an epoch: those of the pipeline with the most steps (one replica: ``ceil(lists / batch_size)``)."""
        return int(self._real_lists(self._replicas).shape[1])

    def train_batches(self, seed: int, epoch: int) -> tf.data.Dataset:
        """One pipeline's lists for one replica: the epoch's batches of ``batch_size``, in the order of ``(seed,
        epoch)``."""
        if self._num_pipelines != 1:
            raise ValueError(f"train_batches: the lists are sharded over {self._num_pipelines} pipelines; each "
                             "replica reads replica_batches")
        features, labels = self._pipelines[0]
        order = self._epoch_order(0, seed, epoch)
        shuffled = tf.nest.map_structure(lambda values: tf.gather(values, order), (features, labels))
        return tfrank_data.from_memory(shuffled, self.batch_size)

    def replica_batches(self, seed: int, epoch: int, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        """This pipeline's ``(features, labels, global_lists)`` elements of the epoch: its local replicas' slices,
        step by step, in replica order; ``steps_per_epoch`` elements per local replica.

        Raises:
          ValueError: ``batch_size`` smaller than the replicas, or the pipeline's lists are not built here.
        """
        pipelines, pipeline = input_context.num_input_pipelines, input_context.input_pipeline_id
        replicas = input_context.num_replicas_in_sync
        local = replicas // pipelines
        if pipeline not in self._pipelines or pipelines != self._num_pipelines:
            raise ValueError(f"input pipeline {pipeline} of {pipelines}: its lists are not built in this process "
                             f"(built: {sorted(self._pipelines)} of {self._num_pipelines}); call build first")
        real = self._real_lists(replicas)  # [pipelines, steps]
        steps = real.shape[1]
        own = real[pipeline]
        step_starts = np.arange(steps) * self._pipeline_batch_sizes(replicas)[pipeline]
        # Each step's real lists split over the local replicas in consecutive runs whose sizes differ by at most one.
        bounds = step_starts[:, None] + (np.arange(local + 1)[None, :] * own[:, None]) // local
        begin, end = bounds[:, :-1].reshape(-1), bounds[:, 1:].reshape(-1)  # [steps * local], step-major
        lengths = np.maximum(end - begin, 1)  # a replica without real lists takes one padding list
        positions = begin[:, None] + np.arange(int(lengths.max()))[None, :]
        features, labels = self._pipelines[pipeline]
        num_lists = int(labels.shape[0]) - 1
        # Past a slice's real lists, the index num_lists: the padding list kept after the pipeline's lists.
        order = tf.concat([self._epoch_order(pipeline, seed, epoch), [num_lists]], axis=0)
        take = tf.gather(order, np.where(positions < end[:, None], positions, num_lists))
        lists = tf.nest.map_structure(lambda values: tf.gather(values, take), (features, labels))
        global_lists = np.repeat(real.sum(axis=0), local).astype(np.int32)

        def cut(padded, length, global_size):
            features, labels = tf.nest.map_structure(lambda values: values[:length], padded)
            return features, labels, global_size

        elements = (lists, tf.constant(lengths, tf.int32), tf.constant(global_lists))
        return tf.data.Dataset.from_tensor_slices(elements).map(cut)

    @property
    def val(self) -> tf.data.Dataset:
        if self._val is None:
            self._val = self._eval_lists(self._val_ratings, self.seed + 1)
        return self._val

    @property
    def test(self) -> tf.data.Dataset:
        if self._test is None:
            self._test = self._eval_lists(self._test_ratings, self.seed + 2)
        return self._test

    # ----------------------------------------------------------------------------------------------------------

    def _counts(self) -> np.ndarray:
        if self.lists_per_pipeline is None:
            raise ValueError("the streamed training lists are not built yet: call build(strategy) first")
        return self.lists_per_pipeline

    def _epoch_order(self, pipeline: int, seed: int, epoch: int) -> tf.Tensor:
        num_lists = int(self._counts()[pipeline])
        return tf.argsort(tf.random.stateless_uniform([num_lists], seed=[seed, epoch]))

    def _pipeline_batch_sizes(self, replicas: int) -> np.ndarray:
        """Each pipeline's lists per full step: the sum of its replicas' slices of ``batch_size``."""
        if self.batch_size < replicas:
            raise ValueError(f"batch_size={self.batch_size}: fewer lists than the {replicas} replicas; pass a "
                             f"batch_size of at least {replicas}")
        slices = (np.arange(1, replicas + 1) * self.batch_size) // replicas - (np.arange(replicas)
                                                                               * self.batch_size) // replicas
        return slices.reshape(self._num_pipelines, -1).sum(axis=1)

    def _real_lists(self, replicas: int) -> np.ndarray:
        """The real (not padding) lists of each pipeline at each step of an epoch: [pipelines, steps]."""
        counts, sizes = self._counts(), self._pipeline_batch_sizes(replicas)
        steps = int(np.max(-(-counts // sizes)))
        return np.clip(counts[:, None] - np.arange(steps)[None, :] * sizes[:, None], 0, sizes[:, None])

    def _eval_lists(self, ratings: tf.data.Dataset, seed: int) -> tf.data.Dataset:
        return tfrank_data.sample_lists(ratings, list_size=self.list_size, num_lists_per_user=self.eval_lists_per_user,
                                        min_list_size=self.list_size, seed=seed, batch_size=self.batch_size)


def _sum_across_workers(strategy: tf.distribute.Strategy, values: np.ndarray) -> np.ndarray:
    """The elementwise sum of ``values`` (int64) over every worker; every worker must call it."""
    if strategy.num_replicas_in_sync == 1:
        return values
    local_replicas = len(strategy.extended.worker_devices)
    # float64 holds any list count exactly; each local replica adds this worker's values once.
    per_replica = strategy.run(lambda: tf.constant(values, tf.float64))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return np.rint(np.asarray(total) / local_replicas).astype(np.int64)
