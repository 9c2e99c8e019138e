"""Shared fixtures: where the MovieLens files are, a small synthetic MovieLens folder, and quiet TensorFlow logs."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# A short run of tfrank.training: few lists, one epoch, quiet.
SMALL_RUN = dict(num_lists_per_user=4, batch_size=256, epochs=1, verbose=0, metrics=("ndcg@5", "mrr"))


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> str:
    """A small ml-25m-shaped folder (ratings.csv, movies.csv) that a model can learn from."""
    from tfrank.data import synthetic

    directory = tmp_path_factory.mktemp("ml-synthetic")
    synthetic.write_movielens_csv(str(directory), num_users=200, num_movies=300, num_ratings=12_000, seed=3)
    return str(directory)


@pytest.fixture(scope="session")
def movielens_dir() -> pathlib.Path:
    """The ml-100k folder named by TFRANK_MOVIELENS_DIR.

    Unset: the test is skipped (a developer without the files). Set but missing or incomplete: the test fails,
    so CI can never pass by silently skipping the MovieLens tests.
    """
    value = os.environ.get("TFRANK_MOVIELENS_DIR")
    if not value:
        pytest.skip("TFRANK_MOVIELENS_DIR is not set; CI sets it to ../shared/data/ml-100k")
    path = pathlib.Path(value)
    if (path / "ml-100k").is_dir():
        path = path / "ml-100k"
    for name in ("u.data", "u.item"):
        if not (path / name).is_file():
            pytest.fail(f"TFRANK_MOVIELENS_DIR={value}: {path / name} is missing; point it at the ml-100k folder")
    return path
