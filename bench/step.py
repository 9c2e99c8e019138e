"""Milliseconds per training step of the tutorial model as the vocabularies grow, weight averaging off and on.

A step sees at most ``batch_size`` user rows and ``batch_size * list_size`` movie rows whatever the vocabulary, so its
cost should not grow with the vocabulary. For each vocabulary size this builds ``tfrank.models.RankingModel`` and
compiles its train step (pairwise hinge, Adagrad at the ranking learning rate, as ``bin/train.py`` trains it), with the
moving average of the weights off and on; it prints the median milliseconds per step over ``--rounds`` rounds of
``--steps`` steps per model (after ``--warmup`` steps). ``--optimizer=keras`` times ``keras.optimizers.Adagrad``
instead of ``tfrank.optimizers.Adagrad``, for a before/after.

    python bench/step.py [--optimizer=tfrank|keras] [--rounds=5] [--steps=10] [--warmup=5] [--sizes=100k,25m,1m]
"""

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrank import losses, models, optimizers, training  # noqa: E402

# name: (users, movies)
VOCABULARY_SIZES = {
    "100k": (943, 1_682),  # MovieLens 100K
    "25m": (162_541, 59_047),  # MovieLens 25M
    "1m": (1_000_000, 200_000),
}
_OPTIMIZERS = {"tfrank": optimizers.Adagrad, "keras": keras.optimizers.Adagrad}


def _batches(num_users: int, num_movies: int, batch_size: int, list_size: int, count: int, seed: int) -> list:
    """``count`` random batches of lists: ids drawn from the whole vocabulary, graded labels 0..4."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        features = {
            "user_id": tf.constant(rng.integers(1, num_users + 1, batch_size), tf.int64),
            "movie_id": tf.constant(rng.integers(1, num_movies + 1, (batch_size, list_size)), tf.int64),
        }
        batches.append((features, tf.constant(rng.integers(0, 5, (batch_size, list_size)), tf.float32)))
    return batches


def compiled_train_step(num_users: int, num_movies: int, optimizer_class: type, ema_momentum: float,
                        batch_size: int, list_size: int, embedding_dim: int) -> Callable[[int], list[float]]:
    """A function that runs ``n`` compiled train steps of a new model and returns each one's seconds."""
    keras.utils.set_random_seed(0)
    model = models.RankingModel(np.arange(1, num_users + 1), np.arange(1, num_movies + 1), embedding_dim=embedding_dim)
    loss_fn = losses.get("pairwise_hinge")
    kwargs = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum > 0 else {}
    optimizer = optimizer_class(learning_rate=training.RANKING_LEARNING_RATE, **kwargs)
    optimizer.build(model.trainable_variables)

    def train_step(features, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(features, training=True))
        gradients = optimizers.gradients(tape, loss, model.trainable_variables)  # as tfrank.training takes them
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    batches = _batches(num_users, num_movies, batch_size, list_size, count=8, seed=1)
    compiled = tf.function(train_step, autograph=False)
    steps_taken = 0

    def run(n: int) -> list[float]:
        nonlocal steps_taken
        seconds = []
        for _ in range(n):
            features, labels = batches[steps_taken % len(batches)]
            start = time.perf_counter()
            float(compiled(features, labels))  # the loss comes to the host each step, as in training
            seconds.append(time.perf_counter() - start)
            steps_taken += 1
        return seconds

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=sorted(_OPTIMIZERS), default="tfrank")
    parser.add_argument("--sizes", default=",".join(VOCABULARY_SIZES), help="comma-separated: 100k, 25m, 1m")
    parser.add_argument("--steps", type=int, default=10, help="steps per cell per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--list_size", type=int, default=5)
    parser.add_argument("--embedding_dim", type=int, default=32)
    args = parser.parse_args()
    sizes = args.sizes.split(",")
    for name in sizes:
        if name not in VOCABULARY_SIZES:
            parser.error(f"--sizes names {name!r}: must be among {', '.join(VOCABULARY_SIZES)}")
    optimizer_class = _OPTIMIZERS[args.optimizer]
    load_before = os.getloadavg()[0]
    momenta = (0.0, training.RANKING_EMA_MOMENTUM)
    cells = {(name, momentum): compiled_train_step(*VOCABULARY_SIZES[name], optimizer_class, momentum,
                                                   args.batch_size, args.list_size, args.embedding_dim)
             for name in sizes for momentum in momenta}
    for run in cells.values():
        run(args.warmup)
    # Round-robin over the cells, so that a burst of load from elsewhere on the machine spreads over all of them.
    seconds = {cell: [] for cell in cells}
    for _ in range(args.rounds):
        for cell, run in cells.items():
            seconds[cell] += run(args.steps)
    milliseconds = {cell: 1000 * statistics.median(times) for cell, times in seconds.items()}
    print(f"{args.optimizer} Adagrad, batch {args.batch_size} x {args.list_size}, pairwise hinge; median ms per step "
          f"over {args.rounds} rounds of {args.steps} steps after {args.warmup}")
    print(f"{'users x movies':<22}{'averaging off':>15}{'on':>8}{'on / first on':>15}")
    for name in sizes:
        num_users, num_movies = VOCABULARY_SIZES[name]
        off, on = (milliseconds[name, momentum] for momentum in momenta)
        ratio = on / milliseconds[sizes[0], momenta[1]]
        print(f"{f'{num_users:,} x {num_movies:,}':<22}{off:>15.1f}{on:>8.1f}{ratio:>15.2f}")
    print(f"{os.cpu_count()} cores; 1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
