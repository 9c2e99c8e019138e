"""Shared fixtures: where the MovieLens files are, and quiet TensorFlow logs."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


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
