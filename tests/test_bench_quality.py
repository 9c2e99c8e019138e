"""bench/quality.py on a tiny run: its numbers are the ones an independent recomputation gives."""

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

from tfrank import data as tfrank_data
from tfrank import training

SCRIPT = REPO_ROOT / "bench" / "quality.py"
SEED = 7


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ndcg(labels, scores, topn):
    """nDCG@topn of one list, written out: ties keep input order, gains 2^label - 1, discounts 1 / log2(rank + 1)."""
    def dcg(order):
        return sum((2.0 ** labels[i] - 1) / math.log2(rank + 2) for rank, i in enumerate(order[:topn]))

    ideal = dcg(sorted(range(len(labels)), key=lambda i: -labels[i]))
    return dcg(sorted(range(len(labels)), key=lambda i: -scores[i])) / ideal if ideal > 0 else 0.0


def _columns(dataset):
    rows = {"user_id": [], "movie_id": [], "user_rating": []}
    for batch in dataset:
        for key in rows:
            rows[key].append(np.reshape(batch[key].numpy(), [-1]))
    return {key: np.concatenate(values) for key, values in rows.items()}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quality")
    json_path = folder / "quality.json"
    command = [sys.executable, str(SCRIPT), "--dataset=synthetic", f"--seeds={SEED}",
               "--config=tiny=epochs:1,num_lists_per_user:2", "--mf_dims=4", "--mf_l2=10", "--shrinkages=5",
               "--bootstrap_samples=300", f"--json={json_path}"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=folder)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(json_path.read_text()), process.stdout


def test_baseline_rows_equal_an_independent_recomputation(bench_run):
    result, _ = bench_run
    ratings = training.load_config_ratings(training.TrainConfig(dataset="synthetic", seed=SEED))
    train, _, test = tfrank_data.split(ratings, seed=SEED)
    train = _columns(train)
    sums, counts = {}, {}
    for movie, rating in zip(train["movie_id"].tolist(), train["user_rating"].tolist()):
        sums[movie] = sums.get(movie, 0.0) + rating
        counts[movie] = counts.get(movie, 0) + 1
    global_mean = sum(sums.values()) / sum(counts.values())

    def mean(movie, shrinkage):
        return (sums.get(movie, 0.0) + shrinkage * global_mean) / (counts.get(movie, 0) + shrinkage)

    for protocol, list_size, min_items, topn in (("lists", 5, 5, 5), ("full", None, 2, 10)):
        lists = tfrank_data.sample_lists(test, list_size=list_size, num_lists_per_user=1, min_list_size=min_items,
                                         seed=SEED + 2)
        prior, shrunk = [], []
        for features, labels in lists:
            movies, labels = features["movie_id"].numpy().tolist(), labels.numpy().tolist()
            prior.append(_ndcg(labels, [mean(m, 0.0) for m in movies], topn))
            shrunk.append(_ndcg(labels, [mean(m, 5.0) for m in movies], topn))
        rows = result["rows"]
        assert rows["movie mean"][protocol]["lists_per_seed"] == [len(prior)]
        assert abs(rows["movie mean"][protocol]["per_seed"][0] - np.mean(prior)) < 1e-6
        assert abs(rows["movie mean, shrunk"][protocol]["per_seed"][0] - np.mean(shrunk)) < 1e-6
        # One seed: the paired difference is the difference of the means, and the prior's own is 0.
        assert abs(rows["movie mean, shrunk"][protocol]["difference"] - (np.mean(shrunk) - np.mean(prior))) < 1e-6
        assert rows["movie mean"][protocol]["difference"] == 0.0


def test_configuration_row_is_the_training_runs_test_ndcg(bench_run):
    result, _ = bench_run
    config = training.TrainConfig(dataset="synthetic", seed=SEED, epochs=1, num_lists_per_user=2, verbose=0,
                                  metrics=("ndcg@5",))
    ((_, reported),) = training.run(config).items()
    assert abs(result["rows"]["tiny"]["lists"]["per_seed"][0] - reported["test"]["ndcg@5"]) < 1e-4


def test_table_prints_every_row_with_its_numbers(bench_run):
    result, stdout = bench_run
    for name in ("tiny", "random scores", "movie mean", "movie mean, shrunk", "biased MF (ALS)"):
        (line,) = [line for line in stdout.splitlines() if line.startswith(name + "  ")]
        for protocol in ("lists", "full"):
            assert f"{result['rows'][name][protocol]['mean']:.4f}" in line
    # Synthetic ratings have no movies file, so no genre rows; MF is fit with the one grid point given.
    assert "genre" not in json.dumps(result["rows"])
    assert result["picked"][0]["biased MF (ALS)"]["dim"] == 4


def test_unknown_config_field_is_a_one_line_error_naming_it():
    bench = _load_bench()
    with pytest.raises(ValueError, match="TrainConfig has no field 'no_such_field'"):
        bench.parse_config("x=no_such_field:1")
    with pytest.raises(ValueError, match="seed is set by the bench"):
        bench.parse_config("x=seed:3")


def test_config_values_take_the_field_types():
    bench = _load_bench()
    name, overrides = bench.parse_config("fast=loss:softmax,epochs:2,learning_rate:0.5,ema_momentum:none")
    assert name == "fast"
    assert overrides == {"loss": ("softmax",), "epochs": 2, "learning_rate": 0.5, "ema_momentum": None}
    assert bench.parse_config("default=") == ("default", {})


def test_chart_is_a_png_with_a_panel_per_protocol(tmp_path):
    bench = _load_bench()
    stats = {"mean": 0.93, "ci": [0.92, 0.94], "difference": 0.0, "difference_ci": [0.0, 0.0]}
    summary = {"movie mean": {"lists": stats, "full": stats}, "tiny": {"lists": stats}}
    bench.write_chart(summary, str(tmp_path / "chart.png"), "test")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
