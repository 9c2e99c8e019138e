"""Loss step time: tfrank vs Keras-RS, forward + backward inside tf.function, and peak memory at (16, 1000).

    /work/venv/bin/python bench/losses.py            # times table, then peak memory per loss
    /work/venv/bin/python bench/losses.py --repeats 30 --no-memory

A step is value and gradient of the loss w.r.t. the scores for one batch of random lists (labels 0..4 with ties,
normal scores, no padding). The table shows the median over at least ``--repeats`` steps (more for short steps,
up to about 2 s per shape) after warm-up steps; tfrank and Keras-RS steps are interleaved so that both see the same
machine load.

Peak memory: each loss runs alone in a fresh subprocess with ``TF_CPU_ALLOCATOR_USE_BFC=true`` (so that
``tf.config.experimental.get_memory_info`` works on CPU); after one warm-up step the allocator's statistics are
reset, and the number is the allocator's peak during three steps minus what it held before them: the step's own
tensors (forward temporaries, what is kept for the backward pass, gradients).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # run from anywhere without installing
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SHAPES = [(1024, 5), (256, 50), (64, 200), (16, 1000)]
LOSSES = ["PairwiseHingeLoss", "PairwiseLogisticLoss", "SoftmaxLoss", "ListMLELoss", "ApproxNDCGLoss"]
KERAS_RS = {"PairwiseHingeLoss", "PairwiseLogisticLoss", "ListMLELoss"}


def make_loss(library: str, name: str):
    if library == "tfrank":
        import tfrank.losses

        return getattr(tfrank.losses, name)()
    import keras_rs

    return getattr(keras_rs.losses, name)()


def make_step(loss, batch: int, list_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = tf.constant(rng.integers(0, 5, (batch, list_size)).astype("float32"))
    scores = tf.Variable(rng.normal(size=(batch, list_size)).astype("float32"))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss(labels, scores)
        return value, tape.gradient(value, scores)

    def run():
        value, grad = step()
        grad.numpy()

    return run


def time_steps(runs: dict, repeats: int, budget_seconds: float = 2.0) -> dict:
    """Median ms per step of each run, interleaved; short steps get more repeats (up to ``budget_seconds``)."""
    for run in runs.values():
        run()
        run()
    start = time.perf_counter()
    for run in runs.values():
        run()
    one_round = time.perf_counter() - start
    repeats = max(repeats, min(500, int(budget_seconds / max(one_round, 1e-6))))
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            times[key].append((time.perf_counter() - start) * 1000.0)
    return {key: statistics.median(values) for key, values in times.items()}


def peak_memory_mb(library: str, name: str, batch: int, list_size: int) -> float:
    """Runs ``--memory-child`` in a fresh process and returns its peak-RSS growth in MB."""
    # The BFC allocator keeps allocation statistics on CPU too (the default CPU allocator keeps none).
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true")
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", library, name, str(batch), str(list_size)],
        capture_output=True, text=True, check=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def memory_child(library: str, name: str, batch: int, list_size: int) -> None:
    """Peak bytes TF's allocator holds during a step, beyond what it held before (inputs, variables)."""
    run = make_step(make_loss(library, name), batch, list_size)
    run()  # trace and warm up
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    for _ in range(3):
        run()
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    print(json.dumps({"peak_mb": (peak - before) / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--memory-child", nargs=4, metavar=("LIBRARY", "LOSS", "BATCH", "LIST_SIZE"))
    args = parser.parse_args()
    if args.memory_child:
        library, name, batch, list_size = args.memory_child
        memory_child(library, name, int(batch), int(list_size))
        return

    names = args.losses.split(",")
    print(f"TF {tf.__version__}, {os.cpu_count()} cores, median step time in ms (at least {args.repeats} steps)")
    header = "| loss | " + " | ".join(f"({b}, {n}) tfrank / Keras-RS" for b, n in SHAPES) + " |"
    print(header)
    print("|" + "---|" * (len(SHAPES) + 1))
    for name in names:
        cells = []
        for batch, list_size in SHAPES:
            runs = {"tfrank": make_step(make_loss("tfrank", name), batch, list_size)}
            if name in KERAS_RS:
                runs["keras_rs"] = make_step(make_loss("keras_rs", name), batch, list_size)
            medians = time_steps(runs, args.repeats)
            if "keras_rs" in medians:
                ratio = medians["tfrank"] / medians["keras_rs"]
                cells.append(f"{medians['tfrank']:.2f} / {medians['keras_rs']:.2f} ({ratio:.2f}x)")
            else:
                cells.append(f"{medians['tfrank']:.2f} / -")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    if args.no_memory:
        return
    batch, list_size = SHAPES[-1]
    print(f"\nPeak TF allocator memory of a step at ({batch}, {list_size}), MB (fresh process per loss)")
    print("| loss | tfrank | Keras-RS |")
    print("|---|---|---|")
    for name in names:
        ours = peak_memory_mb("tfrank", name, batch, list_size)
        theirs = f"{peak_memory_mb('keras_rs', name, batch, list_size):.1f}" if name in KERAS_RS else "-"
        print(f"| {name} | {ours:.1f} | {theirs} |", flush=True)


if __name__ == "__main__":
    main()
