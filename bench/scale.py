"""Scale measurements: one epoch of the tutorial model on MovieLens-25M-shaped ratings, and a projection to 1B.

    python bench/scale.py --ratings=2.5e7 --workers=2 --cache_dir=/tmp/tfrank-scale

1. Measured: a synthetic ml-25m-shaped ratings.csv of --ratings ratings (users and movies scaled linearly from
   ml-25m's 162,541 users and 59,047 movies; written once into --cache_dir, not timed, deleted at the end unless
   --keep_csv), then ``bin/train.py --dataset=movielens/25m --epochs=1 --loss=pairwise_hinge`` in a fresh process:
   its data seconds, training lists per second and test nDCG@5 (results.json), wall seconds and peak RSS. Then the
   same command as --workers processes of ``--distribution_strategy=multi_worker_mirrored`` on 127.0.0.1, each
   with its own TF_CONFIG; the chief's results.json, every worker's peak RSS. ``--input=stream`` runs both with
   ``bin/train.py --input=stream`` (each worker streams the file and builds only its users' lists).
2. Projected: per-step compute from the single process's lists per second, per-step traffic from the model's sizes
   (dense gradients ring-all-reduced, embedding-gradient rows all-gathered), and from these the seconds per epoch
   at 100M, 250M and 1B ratings on N workers at 10, 25 and 100 Gb/s. The footer states the formula and where it
   stops holding.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# ml-25m's shape: the synthetic users and movies scale linearly with the number of ratings.
ML25M_RATINGS = 25_000_000
ML25M_USERS = 162_541
ML25M_MOVIES = 59_047
LOSS = "pairwise_hinge"
PROJECTED_RATINGS = (100_000_000, 250_000_000, 1_000_000_000)
PROJECTED_WORKERS = (1, 2, 4, 8, 16, 32)
BANDWIDTHS_GBPS = (10, 25, 100)
INDEX_BYTES = 8  # an IndexedSlices gradient carries one int64 row index per gathered row


def shape_for(num_ratings: int) -> tuple[int, int]:
    """Users and movies of an ml-25m-shaped set of ``num_ratings`` ratings."""
    users = max(50, round(ML25M_USERS * num_ratings / ML25M_RATINGS))
    movies = max(100, round(ML25M_MOVIES * num_ratings / ML25M_RATINGS))
    return users, movies


def cached_csv(cache_dir: pathlib.Path, num_ratings: int) -> pathlib.Path:
    """The synthetic ratings.csv/movies.csv folder for ``num_ratings``, written on first use."""
    from tfrank.data import synthetic

    users, movies = shape_for(num_ratings)
    directory = cache_dir / f"ratings-{num_ratings}-u{users}-m{movies}-s0"
    if not (directory / "ratings.csv").exists():
        # Written under another name and renamed, so that an interrupted write is never reused.
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        start = time.perf_counter()
        synthetic.write_movielens_csv(partial, users, movies, num_ratings, seed=0)
        partial.rename(directory)
        print(f"wrote {directory} in {time.perf_counter() - start:.0f} s", flush=True)
    return directory


def train_command(csv_dir: pathlib.Path, model_dir: pathlib.Path, extra: list[str]) -> list[str]:
    return [
        sys.executable, str(REPO / "bin" / "train.py"), "--dataset=movielens/25m", f"--movielens_path={csv_dir}",
        "--epochs=1", f"--loss={LOSS}", "--model=tutorial", f"--model_dir={model_dir}", "--verbose=1", *extra,
    ]  # fmt: skip


def run_processes(commands: list[tuple[list[str], dict, pathlib.Path]], timeout: float) -> tuple[float, list[float]]:
    """Runs the commands together; wall seconds and each one's peak RSS in GiB. Kills them all on failure or timeout.

    Each child runs in its own session (process group), and is reaped with ``os.wait4`` so that its peak RSS is
    its own rather than the maximum over every child.
    """
    start = time.perf_counter()
    processes = []
    for command, env, log in commands:
        with open(log, "wb") as out:
            processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))  # fmt: skip
    peak_gib: dict[int, float] = {}
    failed = None
    try:
        while len(peak_gib) < len(processes):
            if time.perf_counter() - start > timeout:
                failed = f"timed out after {timeout:.0f} s"
                break
            for index, process in enumerate(processes):
                if index in peak_gib:
                    continue
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid == 0:
                    continue
                process.returncode = os.waitstatus_to_exitcode(status)
                peak_gib[index] = usage.ru_maxrss * 1024 / 2**30  # ru_maxrss is in KiB on Linux
                if process.returncode != 0 and failed is None:
                    failed = f"process {index} exited with {process.returncode} (log: {commands[index][2]})"
            if failed:
                break
            time.sleep(0.5)
    finally:
        for index, process in enumerate(processes):
            if index not in peak_gib:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
    if failed:
        raise RuntimeError(f"training run failed: {failed}; rerun with a larger --timeout or read the log")
    return time.perf_counter() - start, [peak_gib[i] for i in range(len(processes))]


def read_result(model_dir: pathlib.Path) -> dict:
    with open(model_dir / "results.json") as f:
        return json.load(f)[LOSS]


def measure(csv_dir: pathlib.Path, workers: int, timeout: float, work_dir: pathlib.Path,
            extra: list[str]) -> dict:  # fmt: skip
    """One epoch as one process (``workers == 0``) or as ``workers`` multi_worker_mirrored processes."""
    model_dir = work_dir / (f"workers-{workers}" if workers else "single")
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if not workers:
        commands = [(train_command(csv_dir, model_dir, extra), env, work_dir / "single.log")]
    else:
        from tfrank import distribute

        cluster = {"worker": [f"127.0.0.1:{port}" for port in distribute.free_local_ports(workers)]}
        commands = []
        for index in range(workers):
            task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            worker_env = dict(env, TF_CONFIG=json.dumps(task))
            command = train_command(csv_dir, model_dir, ["--distribution_strategy=multi_worker_mirrored", *extra])
            commands.append((command, worker_env, work_dir / f"worker-{workers}-{index}.log"))
    wall, peaks = run_processes(commands, timeout)
    result = read_result(model_dir)
    return {
        "wall": wall,
        "peaks": peaks,
        "data_seconds": result["data_seconds"],
        "lists_per_second": result["train_lists_per_second"],
        "ndcg5": result["test"]["ndcg@5"],
    }


def model_sizes(num_users: int, num_movies: int, embedding_dim: int) -> dict:
    """Parameter counts of the tfrank RankingModel built in this process for these vocabularies."""
    import numpy as np

    from tfrank import models

    model = models.RankingModel(np.arange(1, num_users + 1), np.arange(1, num_movies + 1), embedding_dim)
    dense = sum(int(np.prod(w.shape)) for layer in [*model.hidden_layers, model.score_layer] for w in layer.weights)
    return {
        "dense_parameters": dense,
        "user_rows": int(model.user_embedding.embeddings.shape[0]),
        "movie_rows": int(model.movie_embedding.embeddings.shape[0]),
        "embedding_dim": embedding_dim,
    }


def step_traffic_bytes(workers: int, batch_per_worker: int, list_size: int, sizes: dict) -> tuple[float, float]:
    """Bytes each worker sends per step: ring all-reduce of the dense gradients, all-gather of embedding rows."""
    dense_bytes = 4 * sizes["dense_parameters"]
    allreduce = 2 * (workers - 1) / workers * dense_bytes
    # Upper bound on the rows one replica touches: one user row per list and one movie row per item.
    rows = batch_per_worker * (1 + list_size)
    gathered = (workers - 1) * rows * (sizes["embedding_dim"] * 4 + INDEX_BYTES)
    return allreduce, gathered


def count_label(count: int) -> str:
    """100M, 250M, 1B."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:g}B"
    return f"{count / 1e6:g}M"


def fmt_seconds(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def projection(lists_per_second: float, args: argparse.Namespace, measured_workers: dict | None) -> list[str]:
    """The projection table and its footer (formula, assumptions, limits)."""
    measured_users, measured_movies = shape_for(args.ratings)
    sizes = model_sizes(measured_users, measured_movies, args.embedding_dim)
    batch = args.batch_size
    compute = batch / lists_per_second
    row_bytes = args.list_size + 1, sizes["embedding_dim"] * 4 + INDEX_BYTES

    def crossover(gbps: int) -> int:
        """The smallest N whose all-gather of embedding rows takes longer than the step's compute."""
        return 2 + int(gbps * 1e9 / (lists_per_second * row_bytes[0] * row_bytes[1] * 8))

    lines = [
        f"## Projection (per-worker batch {batch} lists of {args.list_size}, {args.num_lists_per_user} lists per user, "
        f"compute {compute * 1000:.1f} ms/step from the measured {lists_per_second:,.0f} lists/s)",
        "",
        f"dense parameters: {sizes['dense_parameters']:,} ({4 * sizes['dense_parameters'] / 2**10:.0f} KiB); "
        f"embedding rows gathered per worker-step <= {batch * (1 + args.list_size):,} "
        f"x ({sizes['embedding_dim']} x 4 + {INDEX_BYTES}) bytes",
        "",
        "| ratings | users | movies | tables per worker | workers | all-reduce MB/step | gather MB/step "
        "| steps/epoch | epoch @10 Gb/s | epoch @25 Gb/s | epoch @100 Gb/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ratings in PROJECTED_RATINGS:
        users, movies = shape_for(ratings)
        # Weights, the Adagrad accumulator and the weight average (EMA) of both tables, all on every replica.
        table_bytes = 3 * (users + 1 + movies + 1) * args.embedding_dim * 4
        lists = users * args.num_lists_per_user
        for workers in PROJECTED_WORKERS:
            allreduce, gathered = step_traffic_bytes(workers, batch, args.list_size, sizes)
            steps = -(-lists // (batch * workers))
            epochs = [steps * (compute + (allreduce + gathered) * 8 / (gbps * 1e9)) for gbps in BANDWIDTHS_GBPS]
            lines.append(
                f"| {count_label(ratings)} | {users:,} | {movies:,} | {table_bytes / 2**30:.2f} GiB | {workers} "
                f"| {allreduce / 1e6:.3f} | {gathered / 1e6:.2f} | {steps:,} | "
                + " | ".join(fmt_seconds(e) for e in epochs)
                + " |"
            )
    lines += [
        "",
        "Formula (conservative: communication does not overlap compute):",
        "  steps = ceil(users * num_lists_per_user / (N * b)), users = 162,541 * ratings / 25M (ml-25m's ratio)",
        "  epoch = steps * (b / r + (A + G) * 8 / bandwidth)",
        "  r = lists/s of one process measured above (per-worker throughput, assumed constant in N)",
        "  A = 2 (N-1)/N * 4 * dense_parameters          (ring all-reduce of the Dense gradients)",
        f"  G = (N-1) * b * (1 + list_size) * (4 d + {INDEX_BYTES})   (all-gather of the embedding gradients' rows, "
        "an upper bound: distinct rows per batch)",
        "Where it stops holding:",
        "- MirroredStrategy keeps every table (weights + Adagrad accumulator + EMA) on every worker: the 'tables per "
        "worker' column must fit in each worker's memory; beyond that, parameter servers with sharded tables.",
        "- With --input=memory every worker loads all ratings and builds all lists in memory (peak RSS above grows "
        "with the ratings); --input=stream streams the file and holds only the worker's share of the lists.",
        "- Latency per collective (two per step, tens to hundreds of microseconds on real networks) is ignored; it "
        "matters when b / r is small.",
        "- A is nearly constant in N but G grows as N - 1 (each worker receives every other worker's rows), so the "
        "gather outgrows the compute (G * 8 / bandwidth > b / r) from N = "
        + ", ".join(f"{crossover(gbps)} at {gbps} Gb/s" for gbps in BANDWIDTHS_GBPS)
        + "; past that, adding workers buys little (sharded tables or a larger per-worker batch instead).",
        "- If the embedding gradients were densified before the all-reduce, A would include both whole tables per "
        "step (x table size), and the projection would be communication-bound.",
        "- r was measured on this machine's CPU cores; on other hardware, scale r.",
    ]
    if measured_workers:
        workers, total = measured_workers["workers"], measured_workers["lists_per_second"]
        lines.append(
            f"- Measured here, {workers} workers on 127.0.0.1 trained {total:,.0f} lists/s in all against "
            f"{lists_per_second:,.0f} for one process: they share this machine's {os.cpu_count()} cores and pay "
            "the collectives' per-step cost, so that run tests the protocol, not the per-worker compute of the model."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=float, default=2.5e7, help="Synthetic ratings to train on (2.5e7: ml-25m).")
    parser.add_argument("--workers", type=int, default=2, help="multi_worker_mirrored processes; 0 skips that run.")
    parser.add_argument("--cache_dir", default=os.path.join(tempfile.gettempdir(), "tfrank-scale"),
                        help="Where the synthetic CSV is written and reused.")  # fmt: skip
    parser.add_argument("--keep_csv", action="store_true", help="Keep the synthetic CSV in --cache_dir at the end.")
    parser.add_argument("--timeout", type=float, default=3600, help="Seconds each training run may take.")
    parser.add_argument("--batch_size", type=int, default=1024, help="bin/train.py --batch_size (lists per step).")
    parser.add_argument("--list_size", type=int, default=5, help="bin/train.py --list_size.")
    parser.add_argument("--num_lists_per_user", type=int, default=50, help="bin/train.py --num_lists_per_user.")
    parser.add_argument("--embedding_dim", type=int, default=32, help="bin/train.py --embedding_dim.")
    parser.add_argument("--input", choices=("memory", "stream"), default="memory",
                        help="bin/train.py --input: memory (every worker builds every list) or stream (each worker "
                             "streams the file and builds only its users' lists).")
    args = parser.parse_args()
    args.ratings = int(args.ratings)
    if args.ratings < 1000:
        parser.error(f"--ratings={args.ratings}: pass at least 1000 ratings (e.g. --ratings=1e6)")
    if args.workers < 0:
        parser.error(f"--workers={args.workers}: pass 0 (single process only) or more")
    extra = [f"--batch_size={args.batch_size}", f"--list_size={args.list_size}",
             f"--num_lists_per_user={args.num_lists_per_user}", f"--embedding_dim={args.embedding_dim}",
             f"--input={args.input}"]  # fmt: skip

    cache_dir = pathlib.Path(args.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    csv_dir = cached_csv(cache_dir, args.ratings)
    users, movies = shape_for(args.ratings)
    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="run-", dir=cache_dir))
    rows = []
    try:
        runs = [0] + ([args.workers] if args.workers else [])
        for workers in runs:
            name = "1 process" if not workers else f"{workers} workers (multi_worker_mirrored, 127.0.0.1)"
            print(f"training: {name} ...", flush=True)
            rows.append((name, measure(csv_dir, workers, args.timeout, work_dir, extra)))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        if not args.keep_csv:
            shutil.rmtree(csv_dir, ignore_errors=True)

    print()
    print(f"## One epoch, {args.ratings:,} synthetic ratings ({users:,} users, {movies:,} movies), loss {LOSS}, "
          f"--input={args.input}, {os.cpu_count()} CPU cores")  # fmt: skip
    print()
    print("| run | data s | train lists/s | test nDCG@5 | wall s | peak RSS GiB (per process) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, r in rows:
        peaks = ", ".join(f"{p:.2f}" for p in r["peaks"])
        print(f"| {name} | {r['data_seconds']:.1f} | {r['lists_per_second']:,.0f} | {r['ndcg5']:.4f} "
              f"| {r['wall']:.0f} | {peaks} |")  # fmt: skip
    print()
    measured_workers = None
    if args.workers:
        measured_workers = {"workers": args.workers, "lists_per_second": rows[-1][1]["lists_per_second"]}
    print("\n".join(projection(rows[0][1]["lists_per_second"], args, measured_workers)))


if __name__ == "__main__":
    main()
