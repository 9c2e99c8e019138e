"""Distribution strategies by their TF Model Garden names, the cluster read from ``TF_CONFIG``.

``TF_CONFIG`` is the JSON every TensorFlow launcher sets on each process (Kubernetes TFJob, Vertex AI, a shell
script): ``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}``. In a
``multi_worker_mirrored`` cluster the chief (task ``chief``, else ``worker`` 0) writes the run's files; the other
workers write only temporary checkpoints, which they delete (MultiWorkerMirroredStrategy's checkpoint protocol), so
no two processes ever write one file.
"""

import contextlib
import json
import os
import socket
import threading
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import tensorflow as tf
from tensorflow.python.eager import context

OFF = "off"
ONE_DEVICE = "one_device"
MIRRORED = "mirrored"
MULTI_WORKER_MIRRORED = "multi_worker_mirrored"
PARAMETER_SERVER = "parameter_server"
STRATEGIES = (OFF, ONE_DEVICE, MIRRORED, MULTI_WORKER_MIRRORED, PARAMETER_SERVER)
TF_CONFIG = "TF_CONFIG"
# A worker's checkpoints go to this folder inside the chief's checkpoint folder and are deleted after each save.
WORKER_TEMP_PREFIX = ".worker-temp-"
_EXAMPLE = '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}'
_PS_EXAMPLE = ('{"cluster": {"chief": ["host:port"], "worker": ["host:port", ...], "ps": ["host:port", ...]}, '
               '"task": {"type": "chief", "index": 0}}')


def check_name(name: str) -> None:
    """Raises ValueError when ``name`` is not a strategy tfrank can run, naming the ones it can."""
    if name not in STRATEGIES:
        raise ValueError(f"distribution_strategy={name!r}: must be one of {', '.join(STRATEGIES)}")


def tf_config(environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The parsed ``TF_CONFIG`` of ``environ`` (default ``os.environ``); {} when it is unset or empty."""
    text = (os.environ if environ is None else environ).get(TF_CONFIG, "").strip()
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{TF_CONFIG}={text!r}: is not JSON ({error}); set it to "
                         f"{_EXAMPLE}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{TF_CONFIG}={text!r}: must be a JSON object with 'cluster' and 'task'")
    return parsed


def _check_cluster(config: Dict[str, Any], name: str = MULTI_WORKER_MIRRORED) -> None:
    """Raises ValueError unless ``config`` names a cluster that strategy ``name`` runs, and this process's task."""
    cluster, task = config.get("cluster"), config.get("task")
    example = _PS_EXAMPLE if name == PARAMETER_SERVER else _EXAMPLE
    fix = f"set it on each process to {example}, or use --distribution_strategy=mirrored for one machine's devices"
    if not config:
        raise ValueError(f"distribution_strategy={name}: {TF_CONFIG} is not set; {fix}")
    if not isinstance(cluster, dict) or not cluster.get("worker"):
        raise ValueError(f"{TF_CONFIG} cluster={cluster!r}: names no 'worker' addresses; {fix}")
    tasks = {"chief", "worker", "ps"} if name == PARAMETER_SERVER else {"chief", "worker"}
    unsupported = sorted(set(cluster) - tasks)
    if unsupported:
        raise ValueError(f"{TF_CONFIG} cluster has {', '.join(unsupported)} tasks: {name} runs only "
                         f"{', '.join(sorted(tasks))} tasks; remove the others")
    if name == PARAMETER_SERVER and not (len(cluster.get("chief", [])) == 1 and cluster.get("ps")):
        raise ValueError(f"{TF_CONFIG} cluster has {', '.join(sorted(cluster))} tasks: {name} needs one 'chief' "
                         f"(the coordinator), 'worker' and 'ps' tasks; {fix}")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ValueError(f"{TF_CONFIG} task={task!r}: must name this process's type (one of "
                         f"{', '.join(sorted(cluster))}) and index in the cluster")
    index = task.get("index", 0)
    if not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise ValueError(f"{TF_CONFIG} task index={index!r}: must be in [0, {len(cluster[task['type']])}) for the "
                         f"{len(cluster[task['type']])} {task['type']} addresses")


def strategy_from_name(name: str, environ: Optional[Dict[str, str]] = None) -> tf.distribute.Strategy:
    """The strategy called ``name``; ``off`` is TensorFlow's default strategy (no distribution).

    ``one_device`` runs on the first GPU, else the CPU; ``mirrored`` on every local GPU (else the CPU);
    ``multi_worker_mirrored`` on the cluster in ``TF_CONFIG`` (it must be created before TensorFlow runs any op in
    this process, as MultiWorkerMirroredStrategy requires). ``parameter_server`` is a ParameterServerStrategy for the
    ``chief`` task, which coordinates the training, with :func:`rows_partitioner` over its ``ps`` tasks: embedding
    tables are split by rows over every parameter server, other variables stay whole; on a ``worker`` or ``ps`` task
    this call serves the cluster and never returns (the launcher stops those tasks when the chief is done).
    """
    check_name(name)
    if name == PARAMETER_SERVER:
        return _parameter_server_strategy(environ)
    if name == OFF:
        return tf.distribute.get_strategy()
    if name == ONE_DEVICE:
        return tf.distribute.OneDeviceStrategy("/gpu:0" if tf.config.list_physical_devices("GPU") else "/cpu:0")
    if name == MIRRORED:
        return tf.distribute.MirroredStrategy()
    _check_cluster(tf_config(environ))
    if environ is not None:  # the resolver reads os.environ
        os.environ[TF_CONFIG] = environ[TF_CONFIG]
    if context.context()._context_handle is not None:  # noqa: SLF001
        # Collective ops must be configured before the eager context starts, and importing tfrank starts it (module
        # constants); nothing of that context is needed, so a fresh one is configured.
        context._reset_context()  # noqa: SLF001
    return tf.distribute.MultiWorkerMirroredStrategy()


def _parameter_server_strategy(environ: Optional[Dict[str, str]]) -> tf.distribute.Strategy:
    _check_cluster(tf_config(environ), PARAMETER_SERVER)
    if environ is not None:  # the resolver reads os.environ
        os.environ[TF_CONFIG] = environ[TF_CONFIG]
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if resolver.task_type in ("worker", "ps"):
        # A lost peer fails this task's calls at once instead of retrying (TensorFlow's advice for these servers).
        os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")
        server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                      task_index=resolver.task_id, protocol=resolver.rpc_layer or "grpc", start=True)
        server.join()
    num_ps = len(resolver.cluster_spec().as_dict()["ps"])
    return tf.distribute.ParameterServerStrategy(resolver, variable_partitioner=rows_partitioner(num_ps))


_ROW_SHARDING = threading.local()


@contextlib.contextmanager
def sharded_rows() -> Iterator[None]:
    """Variables created inside are split by rows by :func:`rows_partitioner` (elsewhere this changes nothing).

    ``tfrank.layers.EmbeddingTable`` creates its table inside, and ``tfrank.optimizers.Adagrad`` the per-row state of
    a sharded table, so that the state's shards hold the same rows as the table's.
    """
    depth = getattr(_ROW_SHARDING, "depth", 0)
    _ROW_SHARDING.depth = depth + 1
    try:
        yield
    finally:
        _ROW_SHARDING.depth = depth


def rows_partitioner(num_shards: int) -> Callable[..., Sequence[int]]:
    """A ParameterServerStrategy ``variable_partitioner``: ``num_shards`` row shards for the variables created in
    :func:`sharded_rows` (embedding tables; fewer when a table has fewer rows), one for every other variable.

    Dense layers stay whole: a step reads all of them, so splitting them would only add a request per shard. Shards
    are sized as ``tf.distribute.experimental.partitioners.FixedShardsPartitioner`` sizes them (the first
    ``rows % num_shards`` get one row more), so a table and its optimizer state split the same rows alike.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards={num_shards}: must be >= 1 (one per ps task)")

    def partition(shape: tf.TensorShape, dtype: tf.dtypes.DType, axis: int = 0) -> Sequence[int]:
        shards = [1] * len(shape)
        if shards and getattr(_ROW_SHARDING, "depth", 0) and shape[0] is not None:
            shards[0] = max(1, min(num_shards, int(shape[0])))
        return shards

    return partition


def is_coordinated(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` trains through a ClusterCoordinator (ParameterServerStrategy) rather than ``run``."""
    return isinstance(strategy, tf.distribute.ParameterServerStrategy)


def task(strategy: tf.distribute.Strategy) -> Optional[tuple]:
    """This process's (task type, task index) in a multi-worker cluster; None for a single-process strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict() or resolver.task_type is None:
        return None
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always for one process; in a cluster, ``chief`` else worker 0."""
    this_task = task(strategy)
    if this_task is None:
        return True
    jobs = strategy.cluster_resolver.cluster_spec().as_dict()
    task_type, task_id = this_task
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in jobs)


def write_dir(directory: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process saves what belongs in ``directory``: the folder itself on the chief, a temporary folder
    inside it on the other workers (delete it after the save with :func:`remove_temporary`)."""
    if is_chief(strategy):
        return directory
    task_type, task_id = task(strategy)
    return os.path.join(directory, f"{WORKER_TEMP_PREFIX}{task_type}-{task_id}")


def remove_temporary(directory: str, strategy: tf.distribute.Strategy) -> None:
    """Deletes the temporary folder :func:`write_dir` gave a non-chief worker for ``directory``."""
    if not is_chief(strategy):
        path = write_dir(directory, strategy)
        if tf.io.gfile.exists(path):
            tf.io.gfile.rmtree(path)


def count_across_workers(strategy: tf.distribute.Strategy, value: int) -> int:
    """The sum of ``value`` over every worker (each replica adds it once per worker); waits for all of them.

    It is also a barrier: no worker returns before every worker has called it.
    """
    if strategy.num_replicas_in_sync == 1:
        return value
    local_replicas = len(strategy.extended.worker_devices)
    per_replica = strategy.run(lambda: tf.constant(float(value)))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return round(float(total) / local_replicas)


def free_local_ports(count: int) -> list:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago: for a cluster of processes on one machine.

    The probe sockets are held together until all are bound, so that no two ports are the same.
    """
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()
