"""Benchmarks tfrank.data: the listwise tutorial's list building on MovieLens 100K, and list building at scale.

    python bench/data.py --movielens_dir=../shared/data/ml-100k --sizes=1e5,1e6,1e7,2.5e7

1. Tutorial job on ml-100k: a 70/15/15 split, 50 lists of 5 per user from the training ratings, 1 list of 5 per
   user from validation and from test, every list materialised. tfrank (batched and per-element forms) against
   a faithful reimplementation of the TF Recommenders tutorial's Python loop, each in a fresh subprocess.
2. Scale: synthetic ml-25m style ratings.csv of each size (generated once into --cache_dir, generation not timed),
   read from disk and turned into 50 lists of 5 per user by both paths: in memory (``load_ratings`` +
   ``sample_lists``) and streaming (``stream_ratings`` + ``stream_lists(sorted_by_user=True)``, the file being
   sorted by user), each run in its own subprocess so that
   its peak RSS is its own; the table gives the median of --repeats runs.
3. Both paths on ml-100k (unsorted: the streaming path groups with ``group_by_window``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import platform
import resource
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfrank.data as data  # noqa: E402
from tfrank.data import synthetic  # noqa: E402

LIST_BATCH = 4096
RATINGS_BATCH = 65536


def _count_lists(dataset: tf.data.Dataset) -> int:
    return sum(int(labels.shape[0]) for _, labels in dataset)


def tfrank_tutorial_job(path: str, batched: bool) -> tuple[float, float, float, list[int]]:
    """Seconds to call load/split/sample_lists, to iterate every list once, to iterate again; list counts.

    The calls read the file and sample every list (split and sample_lists work when called); iterating serves the
    lists from memory.
    """
    start = time.perf_counter()
    ratings = data.load_ratings("100k", source=path, batch_size=RATINGS_BATCH if batched else None)
    train, validation, test = data.split(ratings, (0.7, 0.15, 0.15), seed=42)
    jobs = ((train, 50), (validation, 1), (test, 1))
    if batched:
        lists = [data.sample_lists(part, 5, n, seed=42, batch_size=LIST_BATCH) for part, n in jobs]
    else:
        lists = [data.batch_lists(data.sample_lists(part, 5, n, seed=42), LIST_BATCH) for part, n in jobs]
    built = time.perf_counter()
    counts = [_count_lists(dataset) for dataset in lists]
    iterated = time.perf_counter()
    [_count_lists(dataset) for dataset in lists]
    return built - start, iterated - built, time.perf_counter() - iterated, counts


def tutorial_job(path: str) -> tuple[float, list[int]]:
    """The tutorial's construction: a Python loop over every rating, numpy sampling per list."""
    start = time.perf_counter()
    ratings = data.load_ratings("100k", source=path)
    shuffled = ratings.shuffle(100_000, seed=42, reshuffle_each_iteration=False)
    parts = (
        (shuffled.take(70_000), 50),
        (shuffled.skip(70_000).take(15_000), 1),
        (shuffled.skip(85_000).take(15_000), 1),
    )
    counts = []
    for part, num_lists in parts:
        lists = _tutorial_sample_listwise(part, num_list_per_user=num_lists, num_examples_per_list=5, seed=42)
        counts.append(sum(1 for _ in lists))
    return time.perf_counter() - start, counts


def _tutorial_sample_listwise(ratings: tf.data.Dataset, num_list_per_user: int, num_examples_per_list: int,
                              seed: int) -> tf.data.Dataset:  # fmt: skip
    random_state = np.random.RandomState(seed)
    by_user: dict = collections.defaultdict(lambda: {"movie_id": [], "user_rating": []})
    for example in ratings:
        user_id = example["user_id"].numpy()
        by_user[user_id]["movie_id"].append(example["movie_id"])
        by_user[user_id]["user_rating"].append(example["user_rating"])
    slices: dict[str, list] = {"user_id": [], "movie_id": [], "user_rating": []}
    for user_id, columns in by_user.items():
        for _ in range(num_list_per_user):
            if len(columns["movie_id"]) < num_examples_per_list:
                continue
            chosen = random_state.choice(range(len(columns["movie_id"])), size=num_examples_per_list, replace=False)
            slices["user_id"].append(user_id)
            slices["movie_id"].append(tf.convert_to_tensor([columns["movie_id"][i] for i in chosen]))
            slices["user_rating"].append(tf.convert_to_tensor([columns["user_rating"][i] for i in chosen]))
    return tf.data.Dataset.from_tensor_slices(slices)


def _warm_up_tf() -> None:
    """Pays TensorFlow's one-off runtime start (thread pools, first dataset) outside any timing."""
    sum(1 for _ in tf.data.Dataset.range(10).map(lambda x: x + 1).batch(2))


def one_tutorial_job(job: str, path: str) -> dict:
    """Runs in a fresh subprocess: one construction of the tutorial's lists, timed after TensorFlow's start-up."""
    _warm_up_tf()
    if job == "loop":
        seconds, counts = tutorial_job(path)
        return {"total": seconds, "counts": counts}
    build, iterate, again, counts = tfrank_tutorial_job(path, batched=job == "batched")
    return {"build": build, "iterate": iterate, "again": again, "total": build + iterate, "counts": counts}


def run_tutorial(path: str) -> list[str]:
    """Each construction in its own process, so that none inherits another's caches or heap."""
    results = {}
    for job in ("loop", "batched", "per_element"):
        output = subprocess.run(
            [sys.executable, __file__, f"--tutorial_job={job}", f"--movielens_dir={path}"],
            capture_output=True, text=True, check=True,
        ).stdout
        results[job] = json.loads(output.strip().splitlines()[-1])
    loop = results["loop"]["total"]
    lines = [
        "| construction | calls s | iterate s | calls + iterate s | vs tutorial | iterate again s "
        "| lists (train, val, test) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, job in (("tfrank, batched (`batch_size=`)", "batched"),
                      ("tfrank, one rating / list per element", "per_element")):  # fmt: skip
        r = results[job]
        lines.append(
            f"| {name} | {r['build']:.2f} | {r['iterate']:.2f} | {r['total']:.2f} | {loop / r['total']:.0f}x | "
            f"{r['again']:.2f} | {', '.join(map(str, r['counts']))} |"
        )
    counts = ", ".join(map(str, results["loop"]["counts"]))
    lines.append(f"| tutorial Python loop | - | - | {loop:.2f} | 1x | - | {counts} |")
    return lines


def _dataset_dir(cache_dir: pathlib.Path, num_ratings: int) -> tuple[pathlib.Path, int, int]:
    """Sizes shaped like ml-25m (162,541 users, 59,047 movies at 2.5e7), scaled down for smaller runs."""
    users = max(50, round(162_541 * num_ratings / 25_000_000))
    movies = max(2000, round(59_047 * (num_ratings / 25_000_000) ** 0.5))
    return cache_dir / f"ratings-{num_ratings}-u{users}-m{movies}-s0", users, movies


def ensure_csv(cache_dir: pathlib.Path, num_ratings: int) -> pathlib.Path:
    directory, users, movies = _dataset_dir(cache_dir, num_ratings)
    if not (directory / "ratings.csv").is_file():
        print(f"generating {directory} (not timed) ...", flush=True)
        temporary = directory.with_suffix(".tmp")
        synthetic.write_movielens_csv(temporary, users, movies, num_ratings, seed=0)
        temporary.rename(directory)
    return directory


PATHS = ("memory", "stream")


def one_size(source: str, variant: str, path: str) -> dict:
    """Runs in a subprocess: read the ratings file, sample 50 lists of 5 per user by ``path``, materialise them."""
    _warm_up_tf()
    start = time.perf_counter()
    if path == "memory":
        ratings = data.load_ratings(variant, source=source, batch_size=RATINGS_BATCH)
        lists = data.sample_lists(ratings, list_size=5, num_lists_per_user=50, seed=0, batch_size=LIST_BATCH)
    else:  # the GroupLens files other than ml-100k, and the synthetic ones, are sorted by user
        ratings = data.stream_ratings(variant, source=source)
        lists = data.stream_lists(ratings, list_size=5, num_lists_per_user=50, seed=0, batch_size=LIST_BATCH,
                                  sorted_by_user=variant != "100k")  # fmt: skip
    num_lists = _count_lists(lists)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "lists": num_lists, "peak_rss_gib": peak_kib / 2**20}


def _median_runs(source: str, variant: str, path: str, repeats: int) -> dict:
    """The median time and peak RSS of ``repeats`` fresh-process runs of :func:`one_size`, and the load meanwhile."""
    runs = []
    for _ in range(repeats):
        output = subprocess.run(
            [sys.executable, __file__, f"--one_size={source}", f"--variant={variant}", f"--path={path}"],
            capture_output=True, text=True, check=True,
        ).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
    lists = {run["lists"] for run in runs}
    assert len(lists) == 1, f"runs gave different list counts {lists}"
    return {
        "seconds": float(np.median([run["seconds"] for run in runs])),
        "peak_rss_gib": float(np.median([run["peak_rss_gib"] for run in runs])),
        "lists": lists.pop(),
        "load": os.getloadavg()[0],
    }


def _path_rows(label: str, size: int, results: dict[str, dict]) -> list[str]:
    memory_seconds = results["memory"]["seconds"]
    return [
        f"| {label} | {path} | {r['lists']:,} | {r['seconds']:.1f} | {1e6 * r['seconds'] / size:.2f} | "
        f"{r['seconds'] / memory_seconds:.2f}x | {r['peak_rss_gib']:.2f} | {r['load']:.1f} |"
        for path, r in results.items()
    ]


_PATH_HEADER = [
    "| ratings | path | lists | wall s | us / rating | vs memory | peak RSS GiB | load (1 min) |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
]


def run_scale(sizes: list[int], cache_dir: pathlib.Path, repeats: int, keep: bool) -> list[str]:
    lines = list(_PATH_HEADER)
    for size in sizes:
        directory = ensure_csv(cache_dir, size)
        _, users, _ = _dataset_dir(cache_dir, size)
        megabytes = (directory / "ratings.csv").stat().st_size / 1e6
        results = {path: _median_runs(str(directory), "25m", path, repeats) for path in PATHS}
        label = f"{size:,} synthetic ({users:,} users, {megabytes:.0f} MB)"
        lines.extend(_path_rows(label, size, results))
        print("\n".join(lines[-len(PATHS):]), flush=True)
        if not keep:
            shutil.rmtree(directory)  # disk space: a 25M-rating CSV is about 0.7 GB
    return lines


def run_paths_100k(path: str, repeats: int) -> list[str]:
    results = {name: _median_runs(path, "100k", name, repeats) for name in PATHS}
    return _PATH_HEADER + _path_rows("100,000 ml-100k (unsorted)", 100_000, results)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{os.cpu_count()} cores, {model}, {platform.platform()}, Python {python}, TF {tf.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens_dir", default=os.environ.get("TFRANK_MOVIELENS_DIR", "../shared/data/ml-100k"))
    parser.add_argument("--sizes", default="1e5,1e6,1e7,2.5e7", help="comma-separated numbers of ratings")
    parser.add_argument("--cache_dir", default="/tmp/tfrank-bench-data", help="where synthetic CSVs are kept")
    parser.add_argument("--skip_tutorial", action="store_true")
    parser.add_argument("--skip_scale", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per size and path (median)")
    parser.add_argument("--keep_csv", action="store_true", help="keep the synthetic CSVs in --cache_dir")
    parser.add_argument("--one_size", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="25m", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS, default="memory", help=argparse.SUPPRESS)
    parser.add_argument("--tutorial_job", choices=("loop", "batched", "per_element"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tutorial_job:
        print(json.dumps(one_tutorial_job(args.tutorial_job, args.movielens_dir)))
        return
    if args.one_size:
        print(json.dumps(one_size(args.one_size, args.variant, args.path)))
        return
    print(f"machine: {machine()}", flush=True)
    if not args.skip_tutorial:
        print("\nTutorial job on MovieLens 100K (70/15/15 split; 50 lists of 5 per user + 1 val + 1 test list)")
        print("\n".join(run_tutorial(args.movielens_dir)), flush=True)
        print("\nBoth paths on MovieLens 100K: 50 lists of 5 per user, one subprocess per run, median")
        print("\n".join(run_paths_100k(args.movielens_dir, args.repeats)), flush=True)
    if not args.skip_scale:
        print("\nScale: synthetic ml-25m style ratings.csv (sorted by user) -> 50 lists of 5 per user, in memory"
              " (sample_lists) and streaming (stream_lists), one subprocess per run, median")
        sizes = [int(float(s)) for s in args.sizes.split(",")]
        cache_dir = pathlib.Path(args.cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        print("\n".join(run_scale(sizes, cache_dir, args.repeats, args.keep_csv)), flush=True)


if __name__ == "__main__":
    main()
