"""Tests for bin/rank.py, run as a subprocess against a small model exported here.

The model knows MovieLens users 1-50 and movies 1-100, so titles and ratings come from the real files when
TFRANK_MOVIELENS_DIR is set; the tests that need neither pass --notitles.
"""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfrank import export
from tfrank.models import RankingModel

REPO = pathlib.Path(__file__).resolve().parent.parent
USERS = list(range(1, 51))
MOVIES = list(range(1, 101))
LOSS = "pairwise_hinge"


@pytest.fixture(scope="module")
def model() -> RankingModel:
    model = RankingModel(USERS, MOVIES, embedding_dim=8)
    rng = np.random.default_rng(0)
    for variable in model.weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory) -> pathlib.Path:
    """``<export_dir>``, holding one loss's folder as bin/train.py writes it: ``<export_dir>/<loss>/1``."""
    root = tmp_path_factory.mktemp("export")
    export.export_saved_model(model, str(root / LOSS))
    return root


def _scores(model: RankingModel, user_id: int, movie_ids: list[int]) -> np.ndarray:
    inputs = {"user_id": tf.constant([user_id], tf.int64), "movie_id": tf.constant([movie_ids], tf.int64)}
    return model(inputs).numpy()[0]


def _run_rank(*flags: str, movielens_dir: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    """Runs bin/rank.py with this checkout's tfrank; its output must be plain text (stdout is not a terminal)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"  # the binary's own default; pytest's conftest lowers it for the tests
    env.pop("TFRANK_MOVIELENS_DIR", None)
    if movielens_dir is not None:
        env["TFRANK_MOVIELENS_DIR"] = str(movielens_dir)
    command = [sys.executable, str(REPO / "bin" / "rank.py"), *flags]
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=120)
    for stream in (result.stdout, result.stderr):
        assert "\x1b" not in stream and "\r" not in stream, repr(stream[-500:])
    return result


def _rows(stdout: str) -> list[list[str]]:
    """The printed table's rows: rank, score, movie id, title words."""
    return [line.split() for line in stdout.splitlines() if re.match(r"\s+\d+\s", line)]


def test_given_movies_are_printed_best_first_with_their_scores(export_dir, model):
    movie_ids = [9, 23, 4, 77, 51]
    result = _run_rank(f"--export_dir={export_dir / LOSS}", "--user_id=42", "--movie_ids=9,23,4,77,51", "--notitles")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    scores = _scores(model, 42, movie_ids)
    rows = _rows(result.stdout)
    assert [int(row[0]) for row in rows] == [1, 2, 3, 4, 5]
    assert [int(row[2]) for row in rows] == np.array(movie_ids)[np.argsort(-scores)].tolist()
    np.testing.assert_allclose([float(row[1]) for row in rows], np.sort(scores)[::-1], atol=1e-6)


def test_top_k_ranks_the_known_movies_the_user_has_not_rated(export_dir, model, movielens_dir):
    ratings = np.loadtxt(movielens_dir / "u.data", dtype=np.int64, usecols=(0, 1))
    rated = set(ratings[ratings[:, 0] == 42, 1].tolist())
    unrated = [movie_id for movie_id in MOVIES if movie_id not in rated]
    assert 0 < len(unrated) < len(MOVIES)  # sanity: user 42 rated some of the known movies
    scores = _scores(model, 42, unrated)
    expected = np.array(unrated)[np.argsort(-scores, kind="stable")][:3]

    result = _run_rank(f"--export_dir={export_dir / LOSS}", "--user_id=42", "--top_k=3", movielens_dir=movielens_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Top 3 of the {len(unrated)} movies user 42 has not rated" in result.stdout
    rows = _rows(result.stdout)
    assert [int(row[2]) for row in rows] == expected.tolist()
    assert all(len(row) > 3 and row[3] != "?" for row in rows)  # titles from u.item


def test_unknown_ids_warn_and_repeated_movies_are_ranked_once(export_dir, model):
    result = _run_rank(
        f"--export_dir={export_dir / LOSS}", "--user_id=999", "--movie_ids=9,23,9,12345", "--top_k=2", "--notitles"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = result.stderr.splitlines()
    assert len(warnings) == 3, result.stderr
    assert re.fullmatch(r"rank\.py: warning: --movie_ids repeats 9; each movie is ranked once", warnings[0])
    assert re.match(r"rank\.py: warning: --user_id=999 was not seen in training", warnings[1])
    assert re.match(r"rank\.py: warning: --movie_ids 12345 not seen in training", warnings[2])
    scores = _scores(model, 999, [9, 23, 12345])
    rows = _rows(result.stdout)  # the best 2 of the 3 distinct movies
    assert [int(row[2]) for row in rows] == np.array([9, 23, 12345])[np.argsort(-scores)][:2].tolist()
    np.testing.assert_allclose([float(row[1]) for row in rows], np.sort(scores)[::-1][:2], atol=1e-6)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--user_id=42", "--movie_ids=9,-1"], r"--movie_ids: -1: movie ids are >= 0"),
        (
            ["--user_id=42", "--movie_ids=9", "--export_dir={root}"],
            r"--export_dir=\S+ holds no version folders; .*"
            rf"--export_dir=\S+/{LOSS}",
        ),
        (["--user_id=42", "--movie_ids=9", "--export_dir={root}/missing"], r"--export_dir=\S+/missing: no such folder"),
        (["--user_id=4x2"], r"flag --user_id=4x2: invalid literal"),
    ],
    ids=["negative_movie_id", "export_root_instead_of_loss_folder", "missing_export_dir", "user_id_not_an_integer"],
)
def test_errors_are_one_line_naming_the_flag(export_dir, flags, message):
    if not any(flag.startswith("--export_dir") for flag in flags):
        flags = [*flags, f"--export_dir={export_dir / LOSS}"]
    result = _run_rank(*[flag.format(root=export_dir) for flag in flags], "--notitles")
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert re.match(rf"rank\.py: error: {message}", line), line


def test_help_exits_0_and_shows_the_defaults():
    result = _run_rank("--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--top_k" in result.stdout and "(default: '10')" in result.stdout
    assert "--[no]exclude_rated" in result.stdout and "(default: 'latest')" in result.stdout
