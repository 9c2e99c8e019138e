"""End-to-end time of the tutorial's job: the Keras-RS tutorial script against `bin/train.py`, side by side.

Both run as fresh processes on the same machine, in turn, on local MovieLens 100K files:
- Keras-RS: bench/tutorial_keras_rs.py (the tutorial's steps; one model, pairwise hinge).
- tfrank: python bin/train.py --model=tutorial --loss=pairwise_hinge (the tutorial's model; data, 5 epochs,
  validation and test evaluation, export).

    python bench/train.py --movielens_path=../shared/data/ml-100k [--repeats=3]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


def _timed(args, env):
    start = time.perf_counter()
    process = subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{process.stderr[-2000:]}")
    return seconds, process.stdout


def run_keras_rs(path, env):
    seconds, stdout = _timed(["bench/tutorial_keras_rs.py", f"--movielens_path={path}"], env)
    report = json.loads(stdout.strip().splitlines()[-1])
    return seconds, report["list_building_seconds"], report["train_lists_per_second"], report["test_ndcg@5"]


def run_tfrank(path, env):
    with tempfile.TemporaryDirectory() as root:
        seconds, _ = _timed(["bin/train.py", "--model=tutorial", "--loss=pairwise_hinge", f"--movielens_path={path}",
                             f"--model_dir={root}/model", f"--export_dir={root}/export"], env)
        results = json.loads(pathlib.Path(root, "model", "results.json").read_text())["pairwise_hinge"]
    return seconds, results["data_seconds"], results["train_lists_per_second"], results["test"]["ndcg@5"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens_path", default=os.environ.get("TFRANK_MOVIELENS_DIR"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.movielens_path:
        sys.exit("pass --movielens_path=/path/to/ml-100k or set TFRANK_MOVIELENS_DIR")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = {"Keras-RS tutorial": [], "tfrank bin/train.py": []}
    for _ in range(args.repeats):
        rows["Keras-RS tutorial"].append(run_keras_rs(args.movielens_path, env))
        rows["tfrank bin/train.py"].append(run_tfrank(args.movielens_path, env))
    print(f"{'job':<22}{'end-to-end s':>14}{'list building s':>17}{'train lists/s':>15}{'test nDCG@5':>13}")
    for name, runs in rows.items():
        seconds, lists, speed, ndcg = zip(*runs)
        lists_cell = f"{statistics.median(lists):.1f}"
        print(f"{name:<22}{statistics.median(seconds):>14.1f}{lists_cell:>17}{statistics.median(speed):>15.0f}"
              f"{statistics.mean(ndcg):>13.4f}")
    print(f"medians of {args.repeats} runs (nDCG: mean); {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
