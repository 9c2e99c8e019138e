"""Tests for tfrank.data.movielens: local GroupLens files of every variant, the TFDS mapping, and the errors."""

import importlib
import importlib.metadata
import os
import pathlib
import re
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT

from tfrank.data import MovieLensUnavailableError, load_movies, load_ratings, movielens


def _columns(dataset: tf.data.Dataset) -> dict[str, np.ndarray]:
    """The scalar features of all elements as numpy columns."""
    scalars = [key for key, spec in dataset.element_spec.items() if spec.shape.rank == 0]
    batches = list(dataset.map(lambda x: {k: x[k] for k in scalars}).batch(65536).as_numpy_iterator())
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def _write(path: pathlib.Path, content: bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


_U_DATA = b"1\t10\t4\t881250949\n1\t20\t2\t881250950\n2\t10\t5\t891717742\n"
_U_ITEM = (
    b"10|Mis\xe9rables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    b"20|Plain Title (1990)|01-Jan-1990||http://y|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)


@pytest.fixture
def ml100k_like(tmp_path: pathlib.Path) -> pathlib.Path:
    """A tiny made-up folder in the ml-100k format (not MovieLens content)."""
    folder = tmp_path / "ml-100k"
    _write(folder / "u.data", _U_DATA)
    _write(folder / "u.item", _U_ITEM)
    return folder


# --- The real ml-100k files (TFRANK_MOVIELENS_DIR).


def test_ml100k_has_100000_ratings_of_943_users_on_1682_movies(movielens_dir):
    batches = list(load_ratings("100k", source=movielens_dir, batch_size=1 << 20).as_numpy_iterator())
    assert len(batches) == 1
    ratings = batches[0]
    assert len(ratings["user_id"]) == 100_000
    assert len(np.unique(ratings["user_id"])) == 943
    assert len(np.unique(ratings["movie_id"])) == 1682
    assert set(np.unique(ratings["user_rating"])) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ratings["timestamp"].min() > 870_000_000
    first_line = (movielens_dir / "u.data").read_text().splitlines()[0].split("\t")
    assert [ratings[k][0] for k in ("user_id", "movie_id", "user_rating", "timestamp")] == [
        int(first_line[0]), int(first_line[1]), float(first_line[2]), int(first_line[3])
    ]  # fmt: skip


def test_ml100k_one_rating_per_element_matches_batches(movielens_dir):
    ratings = load_ratings("100k", source=movielens_dir)
    assert ratings.element_spec["user_id"].shape == []
    per_element = _columns(ratings)
    batched = next(load_ratings("100k", source=movielens_dir, batch_size=1 << 20).as_numpy_iterator())
    for key in per_element:
        np.testing.assert_array_equal(per_element[key], batched[key])


def test_ml100k_movies_titles_are_the_latin1_text_as_utf8(movielens_dir):
    movies = _columns(load_movies("100k", source=movielens_dir))
    assert len(movies["movie_id"]) == 1682
    lines = (movielens_dir / "u.item").read_bytes().decode("latin-1").splitlines()
    expected = {int(line.split("|")[0]): line.split("|")[1] for line in lines}
    decoded = {int(i): t.decode("utf-8") for i, t in zip(movies["movie_id"], movies["movie_title"])}
    assert decoded == expected
    assert decoded[1] == "Toy Story (1995)"
    assert decoded[543] == "Miserables, Les (1995)"  # this copy of u.item spells it without the accent


def test_ml100k_genres_use_the_tfds_vocabulary(movielens_dir):
    movies = load_movies("100k", source=movielens_dir)
    toy_story = next(iter(movies.filter(lambda m: m["movie_id"] == 1)))
    assert toy_story["movie_genres"].numpy().tolist() == [b"Animation", b"Children", b"Comedy"]


# --- Formats, written small into tmp_path (made-up content).


def test_latin1_accented_title_comes_out_as_utf8(ml100k_like):
    movies = list(load_movies("100k", source=ml100k_like).as_numpy_iterator())
    assert movies[0]["movie_title"].decode("utf-8") == "Misérables, Les (1995)"
    assert movies[0]["movie_genres"].tolist() == [b"Children", b"Comedy"]
    assert movies[1]["movie_genres"].tolist() == [b"Unknown"]


def test_ml1m_format_is_parsed(tmp_path):
    folder = tmp_path / "ml-1m"
    _write(folder / "ratings.dat", b"1::1193::5::978300760\n1::661::3::978302109\n6040::1::4::956703932\n")
    _write(folder / "movies.dat", b"1::Caf\xe9: A Test (2000)::Animation|Children's|Comedy\n2::Other (1999)::Drama\n")
    ratings = _columns(load_ratings("1m", source=folder))
    np.testing.assert_array_equal(ratings["user_id"], [1, 1, 6040])
    np.testing.assert_array_equal(ratings["movie_id"], [1193, 661, 1])
    np.testing.assert_array_equal(ratings["user_rating"], [5.0, 3.0, 4.0])
    np.testing.assert_array_equal(ratings["timestamp"], [978300760, 978302109, 956703932])
    movies = list(load_movies("1m", source=tmp_path).as_numpy_iterator())  # the parent folder works too
    assert movies[0]["movie_title"].decode("utf-8") == "Café: A Test (2000)"
    assert movies[0]["movie_genres"].tolist() == [b"Animation", b"Children", b"Comedy"]
    assert movies[1]["movie_id"] == 2


@pytest.mark.parametrize("variant", ["20m", "25m"])
def test_csv_format_keeps_half_stars_and_quoted_titles(tmp_path, variant):
    _write(tmp_path / "ratings.csv", b"userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,0.5,1112484676\n")
    _write(
        tmp_path / "movies.csv",
        'movieId,title,genres\n1,"Film, The (1995)",Adventure|Children\n2,"Say ""Hi"" (2001)",Comedy\n'
        "3,Été (2003),(no genres listed)\n".encode("utf-8"),
    )
    ratings = _columns(load_ratings(variant, source=tmp_path))
    np.testing.assert_array_equal(ratings["user_rating"], np.array([3.5, 0.5], np.float32))
    np.testing.assert_array_equal(ratings["timestamp"], [1112486027, 1112484676])
    movies = list(load_movies(variant, source=tmp_path).as_numpy_iterator())
    assert [m["movie_title"].decode("utf-8") for m in movies] == ["Film, The (1995)", 'Say "Hi" (2001)', "Été (2003)"]
    assert movies[2]["movie_genres"].tolist() == [b"(no genres listed)"]


def test_windows_line_endings_are_accepted(tmp_path):
    _write(tmp_path / "u.data", _U_DATA.replace(b"\n", b"\r\n"))
    ratings = _columns(load_ratings("100k", source=tmp_path))
    np.testing.assert_array_equal(ratings["timestamp"], [881250949, 881250950, 891717742])


def test_zip_source_reads_the_original_archive_layout(ml100k_like, tmp_path):
    archive = tmp_path / "downloads" / "ml-100k.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("ml-100k/u.data", _U_DATA)
        zipped.writestr("ml-100k/u.item", _U_ITEM)
    from_zip = _columns(load_ratings("100k", source=archive))
    from_folder = _columns(load_ratings("100k", source=ml100k_like))
    for key in from_folder:
        np.testing.assert_array_equal(from_zip[key], from_folder[key])
    next_to_zip = list(load_movies("100k", source=archive.parent).as_numpy_iterator())
    assert next_to_zip[0]["movie_title"].decode("utf-8") == "Misérables, Les (1995)"


def test_source_none_reads_the_folder_in_the_environment(ml100k_like, monkeypatch):
    monkeypatch.setenv("TFRANK_MOVIELENS_DIR", str(ml100k_like.parent))
    assert len(_columns(load_ratings("100k"))["user_id"]) == 3


# --- Errors.


def test_unknown_variant_raises_value_error():
    with pytest.raises(ValueError, match=r"variant='10k'.*100k, 1m, 20m, 25m"):
        load_ratings("10k", source="/nowhere")


def test_missing_folder_raises_file_not_found_naming_file_and_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"u\.data not found in .*missing.*files\.grouplens\.org.*ml-100k"):
        load_ratings("100k", source=tmp_path / "missing")


def test_missing_movies_file_is_named(tmp_path):
    _write(tmp_path / "ratings.csv", b"userId,movieId,rating,timestamp\n")
    with pytest.raises(FileNotFoundError, match=r"MovieLens 25m movies: movies\.csv not found"):
        load_movies("25m", source=tmp_path)


def test_malformed_tab_line_names_file_and_line_number(tmp_path):
    path = _write(tmp_path / "u.data", b"1\t10\t4\t881250949\n1\t20\t2\t881250950\n2\t10\t881250950\n")
    expected = r"u\.data: line 3 is 2\\t10\\t881250950; expected user_id<TAB>movie_id"
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
        _columns(load_ratings("100k", source=path.parent))


def test_malformed_csv_line_number_counts_the_header(tmp_path):
    _write(tmp_path / "ratings.csv", b"userId,movieId,rating,timestamp\n1,2,3.5,1\n1,3,4.0,2\n1,x,4.0,3\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"ratings\.csv: line 4 is 1,x,4\.0,3"):
        _columns(load_ratings("25m", source=tmp_path))


def test_malformed_line_after_the_first_batch_has_its_own_number(tmp_path):
    lines = [f"{u}::{u % 97 + 1}::3::978300760" for u in range(1, 70_001)]
    lines[69_000] = "1::2::3"
    _write(tmp_path / "ratings.dat", ("\n".join(lines) + "\n").encode())
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"ratings\.dat: line 69001 is 1::2::3;"):
        _columns(load_ratings("1m", source=tmp_path))


def test_rating_out_of_range_is_malformed(tmp_path):
    _write(tmp_path / "u.data", b"1\t10\t4\t881250949\n1\t20\t7\t881250950\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"line 2 .*a rating between 0\.5 and 5"):
        _columns(load_ratings("100k", source=tmp_path))


def test_blank_line_inside_the_file_is_not_dropped(tmp_path):
    _write(tmp_path / "u.data", b"1\t10\t4\t881250949\n\n1\t20\t2\t881250950\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"u\.data: line 2 is ; expected"):
        _columns(load_ratings("100k", source=tmp_path))


def test_malformed_movies_line_is_reported(tmp_path):
    _write(tmp_path / "u.item", _U_ITEM + b"30|Short|line\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"u\.item: line 3 is 30\|Short\|line"):
        list(load_movies("100k", source=tmp_path))


def test_repeated_movie_id_names_the_file_and_both_lines(tmp_path):
    _write(tmp_path / "u.item", _U_ITEM + _U_ITEM.splitlines(keepends=True)[0].replace(b"Mis\xe9rables", b"Other"))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"u\.item: line 3 repeats movie id 10 of line 1\."):
        list(load_movies("100k", source=tmp_path))


def test_repeated_movie_id_in_a_csv_counts_the_header(tmp_path):
    _write(tmp_path / "movies.csv", b"movieId,title,genres\n1,A (1995),Drama\n2,B (1996),Drama\n1,C (1997),War\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"movies\.csv: line 4 repeats movie id 1 of line 2\."):
        list(load_movies("25m", source=tmp_path))


def test_movie_ids_beyond_the_first_batch_of_lines_are_checked_against_all_lines(tmp_path):
    lines = [f"{i},Film {i} (1990),Drama" for i in range(1, 70_001)] + ["5,Again (1990),Drama"]
    _write(tmp_path / "movies.csv", ("movieId,title,genres\n" + "\n".join(lines) + "\n").encode())
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"line 70002 repeats movie id 5 of line 6\."):
        list(load_movies("25m", source=tmp_path))


def test_id_overflowing_int64_names_the_file_and_its_line(tmp_path):
    _write(tmp_path / "u.data", _U_DATA + b"99999999999999999999\t10\t4\t881250949\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"u\.data: line 4 is 99999999999999999999\\t10.*2\*\*63"):
        _columns(load_ratings("100k", source=tmp_path))
    _write(tmp_path / "ratings.csv", b"userId,movieId,rating,timestamp\n1,9223372036854775808,3.5,1\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"ratings\.csv: line 2 is 1,9223372036854775808,"):
        _columns(load_ratings("25m", source=tmp_path))
    _write(tmp_path / "movies.csv", b"movieId,title,genres\n9223372036854775808,A (1995),Drama\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"movies\.csv: line 2 is 9223372036854775808,A"):
        list(load_movies("25m", source=tmp_path))


def test_largest_int64_id_is_read_exactly(tmp_path):
    _write(tmp_path / "ratings.csv", b"userId,movieId,rating,timestamp\n9223372036854775807,007,3.5,1\n")
    ratings = _columns(load_ratings("25m", source=tmp_path))
    assert ratings["user_id"].tolist() == [2**63 - 1] and ratings["movie_id"].tolist() == [7]


# --- Sources that are not what they should be: one line naming the file and what to do.


def _zip_of(path: pathlib.Path, members: dict[str, bytes]) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, content in members.items():
            zipped.writestr(name, content)
    return path


def _many_ratings() -> bytes:
    """Enough made-up ratings that a deflated zip of them is several KB, so a flipped byte lands in the data."""
    return "".join(f"{u}\t{m}\t{(u * m) % 5 + 1}\t{881250949 + u * m}\n" for u in range(1, 300)
                   for m in range(1, 40)).encode()  # fmt: skip


def _one_line_error(error_type: type, load, *args, **kwargs) -> str:
    with pytest.raises(error_type) as raised:
        load(*args, **kwargs)
    message = str(raised.value)
    assert "\n" not in message.strip(), message
    return message


def test_path_to_the_ratings_or_movies_file_itself_reads_its_folder(ml100k_like):
    for given in (ml100k_like / "u.data", ml100k_like / "u.item"):
        np.testing.assert_array_equal(_columns(load_ratings("100k", source=given))["movie_id"], [10, 20, 10])
        assert [m["movie_id"] for m in load_movies("100k", source=given).as_numpy_iterator()] == [10, 20]


def test_file_of_another_variant_says_which_variant_it_is(tmp_path):
    path = _write(tmp_path / "ratings.csv", b"userId,movieId,rating,timestamp\n")
    message = _one_line_error(ValueError, load_ratings, "100k", source=path)
    assert message.startswith(f"{path} is a file of MovieLens 20m or 25m, not 100k: pass the ml-100k folder")
    assert "--movielens_path" in message


def test_users_file_of_another_variant_says_which_variant_it_is(tmp_path):
    path = _write(tmp_path / "users.dat", b"1::F::1::10::48067\n")
    message = _one_line_error(ValueError, load_ratings, "100k", source=path)
    assert message.startswith(f"{path} is a file of MovieLens 1m, not 100k: pass the ml-100k folder")


def test_path_to_the_users_file_reads_its_folder(ml100k_like):
    _write(ml100k_like / "u.user", b"1|24|M|technician|85711\n")
    ratings = _columns(load_ratings("100k", source=ml100k_like / "u.user"))
    np.testing.assert_array_equal(ratings["movie_id"], [10, 20, 10])


def test_file_that_is_neither_a_folder_nor_a_zip_is_named(tmp_path):
    path = _write(tmp_path / "notes.txt", b"not ratings\n")
    message = _one_line_error(ValueError, load_ratings, "1m", source=path)
    assert message.startswith(f"{path} is neither a MovieLens folder nor a zip: pass the ml-1m folder")


def test_text_file_named_zip_is_not_a_zip(tmp_path):
    path = _write(tmp_path / "ml-100k.zip", b"<html>404 Not Found</html>\n")
    message = _one_line_error(ValueError, load_ratings, "100k", source=path)
    assert message.startswith(f"{path} is not a zip file (it does not start with the zip signature PK)")
    assert "files.grouplens.org/datasets/movielens/ml-100k.zip" in message


def test_truncated_zip_is_named_as_truncated_or_corrupt(tmp_path):
    whole = _zip_of(tmp_path / "whole.zip", {"ml-100k/u.data": _many_ratings()}).read_bytes()
    for source in (_write(tmp_path / "given" / "ml-100k.zip", whole[: len(whole) // 2]),
                   _write(tmp_path / "folder" / "ml-100k.zip", whole[:-10]).parent):  # fmt: skip
        message = _one_line_error(ValueError, load_ratings, "100k", source=source)
        assert message.startswith("MovieLens zip ") and "ml-100k.zip is truncated or corrupt (" in message
        assert str(source) in message and "download it again from https://files.grouplens.org" in message


def test_corrupt_zip_data_is_named_and_leaves_no_extracted_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(movielens.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    whole = _zip_of(tmp_path / "whole.zip", {"ml-100k/u.data": _many_ratings()}).read_bytes()
    flipped = whole[:100] + bytes(b ^ 0x55 for b in whole[100:400]) + whole[400:]
    path = _write(tmp_path / "ml-100k.zip", flipped)
    message = _one_line_error(ValueError, load_ratings, "100k", source=path)
    assert message.startswith(f"MovieLens zip {path} is truncated or corrupt (")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_zip_without_the_file_names_the_member(tmp_path):
    path = _zip_of(tmp_path / "ml-100k.zip", {"ml-100k/README": b"hello"})
    message = _one_line_error(FileNotFoundError, load_ratings, "100k", source=path)
    assert message.startswith(f"MovieLens zip {path} has no member ml-100k/u.data (it holds ['ml-100k/README'])")


def test_missing_folder_message_is_one_line_with_the_flag_not_an_argument_name(tmp_path):
    message = _one_line_error(FileNotFoundError, load_ratings, "100k", source=tmp_path / "missing")
    assert f"{tmp_path / 'missing'} does not exist" in message
    assert "--movielens_path" in message and "source=" not in message


def test_malformed_line_read_by_split_or_sample_lists_raises_one_clean_line(tmp_path):
    from tfrank.data import sample_lists, split

    path = _write(tmp_path / "u.data", b"1\t10\t4\t881250949\n1\t20\t2\t881250950\n2\t10\t881250950\n")
    expected = (f"Malformed line in {path}: line 3 is 2\\t10\\t881250950; expected user_id<TAB>movie_id<TAB>"
                f"rating<TAB>timestamp, all integers up to 2**63 - 1. Fix or remove it.")  # fmt: skip
    for batch_size in (None, 2):
        ratings = load_ratings("100k", source=tmp_path, batch_size=batch_size)
        for read in (split, sample_lists):
            assert _one_line_error(tf.errors.InvalidArgumentError, read, ratings) == expected


_KILLED_AFTER_EXTRACTING = """
import os, signal, sys
from tfrank.data import load_ratings
load_ratings("100k", source=sys.argv[1])
print(os.getpid(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_copy_extracted_by_a_killed_run_is_removed_by_the_next_run(tmp_path, monkeypatch):
    archive = _zip_of(tmp_path / "ml-100k.zip", {"ml-100k/u.data": _U_DATA, "ml-100k/u.item": _U_ITEM})
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    script = _write(tmp_path / "killed.py", _KILLED_AFTER_EXTRACTING.encode())
    env = {**os.environ, "TMPDIR": str(temp_dir), "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, str(script), str(archive)], env=env, capture_output=True, text=True)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    killed_pid = int(run.stdout.split()[0])
    left_behind = list(temp_dir.iterdir())
    assert [p.name.startswith(f"tfrank-movielens-{killed_pid}-") for p in left_behind] == [True]
    alive = temp_dir / f"tfrank-movielens-{os.getppid()}-keep"  # a running process's copy stays
    alive.mkdir()
    monkeypatch.setattr(movielens.tempfile, "tempdir", str(temp_dir))
    assert len(_columns(load_ratings("100k", source=archive))["user_id"]) == 3
    remaining = sorted(p.name for p in temp_dir.iterdir())
    assert alive.name in remaining and left_behind[0].name not in remaining
    assert [name for name in remaining if name.startswith(f"tfrank-movielens-{os.getpid()}-")] != []


# --- TFDS: the mapping on TFDS-shaped data, and the not-prepared paths (no network, no download).


def _tfds_shaped_ratings() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices({
        "user_id": [b"1", b"2", b"2"],
        "movie_id": [b"10", b"20", b"10"],
        "user_rating": np.array([4.0, 2.0, 5.0], np.float32),
        "timestamp": np.array([881250949, 881250950, 891717742], np.int64),
        "movie_title": ["Misérables".encode(), b"Plain Title (1990)", "Misérables".encode()],
        "movie_genres": tf.ragged.constant([[3, 4], [17], [3, 4]], dtype=tf.int64),
        "bucketized_user_age": np.array([25.0, 35.0, 35.0], np.float32),
    })  # fmt: skip


def _tfds_shaped_movies() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices({
        "movie_id": [b"10", b"20"],
        "movie_title": ["Misérables, Les (1995)".encode(), b"Plain Title (1990)"],
        "movie_genres": tf.ragged.constant([[3, 4], [17]], dtype=tf.int64),
    })  # fmt: skip


def test_tfds_ratings_map_to_the_local_schema_and_values(ml100k_like):
    mapped = movielens.map_tfds_ratings(_tfds_shaped_ratings())
    local = load_ratings("100k", source=ml100k_like)
    assert mapped.element_spec == local.element_spec
    columns = _columns(mapped)
    np.testing.assert_array_equal(columns["user_id"], [1, 2, 2])
    np.testing.assert_array_equal(columns["movie_id"], [10, 20, 10])
    np.testing.assert_array_equal(columns["user_rating"], [4.0, 2.0, 5.0])
    np.testing.assert_array_equal(columns["timestamp"], [881250949, 881250950, 891717742])


def test_tfds_movies_map_to_the_local_schema_and_genre_names(ml100k_like):
    mapped = movielens.map_tfds_movies(_tfds_shaped_movies())
    local = load_movies("100k", source=ml100k_like)
    assert mapped.element_spec == local.element_spec
    from_tfds = list(mapped.as_numpy_iterator())
    from_files = list(local.as_numpy_iterator())
    for a, b in zip(from_tfds, from_files):
        assert a["movie_id"] == b["movie_id"]
        assert a["movie_title"] == b["movie_title"]
        assert a["movie_genres"].tolist() == b["movie_genres"].tolist()


class _FakeBuilder:
    def __init__(self, prepared: bool, error: Exception | None = None):
        self.prepared = prepared
        self.error = error
        self.data_dir = "/tmp/fake_tfds/movielens/100k-ratings/0.1.1"
        self.download_calls = 0

    def is_prepared(self) -> bool:
        return self.prepared

    def download_and_prepare(self) -> None:
        self.download_calls += 1
        if self.error:
            raise self.error
        self.prepared = True

    def as_dataset(self, split: str) -> tf.data.Dataset:
        assert split == "train"
        return _tfds_shaped_ratings()


def _use_fake_tfds(monkeypatch, builder: _FakeBuilder, reachable: bool) -> list:
    calls = []

    def fake_builder(name, data_dir):
        calls.append((name, data_dir))
        return builder

    monkeypatch.setattr(movielens, "_tfds_builder", fake_builder)
    monkeypatch.setattr(movielens, "_network_reachable", lambda: reachable)
    return calls


def test_unprepared_tfds_offline_raises_unavailable_at_once(monkeypatch):
    builder = _FakeBuilder(prepared=False)
    _use_fake_tfds(monkeypatch, builder, reachable=False)
    expected = r"cannot be downloaded.*--movielens_path.*TFRANK_MOVIELENS_DIR"
    with pytest.raises(MovieLensUnavailableError, match=expected):
        load_ratings("100k", source="tfds")
    assert builder.download_calls == 0
    assert issubclass(MovieLensUnavailableError, RuntimeError)


def test_tfds_helper_importlib_resources_is_a_runtime_requirement():
    # tensorflow-datasets imports it while preparing a data set without declaring it: tfrank installs it.
    requirements = importlib.metadata.requires("tfrank")
    assert any(re.match(r"importlib[_-]resources\b", requirement) for requirement in requirements)
    importlib.import_module("importlib_resources")


def test_prepared_tfds_is_read_with_its_data_dir_and_mapped(monkeypatch):
    builder = _FakeBuilder(prepared=True)
    calls = _use_fake_tfds(monkeypatch, builder, reachable=False)
    ratings = _columns(load_ratings("100k", source="tfds", data_dir="/data/tfds"))
    assert calls == [("movielens/100k-ratings", "/data/tfds")]
    assert builder.download_calls == 0
    np.testing.assert_array_equal(ratings["user_id"], [1, 2, 2])


def test_prepared_tfds_in_batches_has_rank1_features(monkeypatch):
    _use_fake_tfds(monkeypatch, _FakeBuilder(prepared=True), reachable=False)
    batches = list(load_ratings("100k", source="tfds", batch_size=2).as_numpy_iterator())
    assert [b["user_id"].tolist() for b in batches] == [[1, 2], [2]]
    assert [b["timestamp"].tolist() for b in batches] == [[881250949, 881250950], [891717742]]


def test_source_none_without_environment_uses_tfds(monkeypatch):
    monkeypatch.delenv("TFRANK_MOVIELENS_DIR", raising=False)
    calls = _use_fake_tfds(monkeypatch, _FakeBuilder(prepared=True), reachable=False)
    load_ratings("1m")
    assert calls == [("movielens/1m-ratings", None)]


def test_network_check_is_false_when_the_connection_fails(monkeypatch):
    def refuse(address, timeout):
        assert timeout <= 3.0
        raise OSError("network is unreachable")

    monkeypatch.setattr(movielens.socket, "create_connection", refuse)
    assert movielens._network_reachable() is False
