"""Tests for tfrank.data.features: movie and user features of every format, history features, row alignment."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tfrank.data import (
    GENRES,
    features,
    load_movie_features,
    load_user_features,
)


def _write(path: pathlib.Path, content: bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _genre_names(row: np.ndarray) -> list[str]:
    return [GENRES[i] for i in np.flatnonzero(row)]


# Made-up files in the GroupLens formats (not MovieLens content).
_U_ITEM = (
    b"10|Mis\xe9rables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    b"20|Re-release (1983)|14-Mar-1997||http://y|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1\n"
    b"30|No Year In Title|05-Feb-1994||http://z|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    b"40|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)
_U_USER = b"1|24|M|technician|85711\n2|53|F|other|94043\n7|57|M|administrator|T8H1N\n"
_MOVIES_DAT = b"1::Caf\xe9: A Test (2000)::Animation|Children's|Comedy\n2::Other (1999)::Drama|War\n"
_USERS_DAT = b"1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::0::55117-1234\n"
_MOVIES_CSV = (
    'movieId,title,genres\n1,"Film, The (1995)",Adventure|Children\n2,Series (1994-1998),Comedy|IMAX\n'
    "3,Été,(no genres listed)\n4,Ongoing (2007-) ,Drama\n"
).encode("utf-8")


# --- The real ml-100k files (TFRANK_MOVIELENS_DIR).


def test_ml100k_movie_features_have_the_real_genres_year_and_title(movielens_dir):
    movies = load_movie_features("100k", source=movielens_dir)
    assert movies["movie_id"].dtype == np.int64 and movies["year"].dtype == np.int64
    assert movies["genres"].shape == (1682, len(GENRES)) and movies["genres"].dtype == np.float32
    np.testing.assert_array_equal(movies["movie_id"], np.arange(1, 1683))
    toy_story = 0
    assert _genre_names(movies["genres"][toy_story]) == ["Animation", "Children", "Comedy"]
    assert movies["year"][toy_story] == 1995
    assert movies["title"][toy_story] == b"Toy Story (1995)"
    assert movies["year"][266] == 0 and movies["title"][266] == b"unknown"  # movie 267 has neither title nor date
    assert _genre_names(movies["genres"][266]) == ["Unknown"]
    assert movies["year"][180] == 1983  # Return of the Jedi: the title's year, not the 1997 re-release date
    assert (movies["genres"].sum(axis=1) >= 1).all()


def test_ml100k_user_features_have_the_real_demographics(movielens_dir):
    users = load_user_features("100k", source=movielens_dir)
    np.testing.assert_array_equal(users["user_id"], np.arange(1, 944))
    assert (users["age"][0], users["gender"][0], users["occupation"][0], users["zip"][0]) == (
        24, b"M", b"technician", b"85711")  # fmt: skip
    assert (users["age"][1], users["gender"][1], users["occupation"][1]) == (53, b"F", b"other")
    assert set(users["gender"]) == {b"M", b"F"}
    assert users["age"].dtype == np.int64 and users["age"].min() >= 7


# --- Formats (made-up files in tmp_path).


def test_ml100k_format_takes_the_title_year_then_the_release_date(tmp_path):
    _write(tmp_path / "u.item", _U_ITEM)
    movies = load_movie_features("100k", source=tmp_path)
    np.testing.assert_array_equal(movies["movie_id"], [10, 20, 30, 40])
    np.testing.assert_array_equal(movies["year"], [1995, 1983, 1994, 0])
    assert movies["title"][0].decode("utf-8") == "Misérables, Les (1995)"
    assert _genre_names(movies["genres"][0]) == ["Children", "Comedy"]
    assert _genre_names(movies["genres"][1]) == ["Action", "Western"]
    assert _genre_names(movies["genres"][3]) == ["Unknown"]


def test_ml1m_format_gives_movie_and_user_features(tmp_path):
    _write(tmp_path / "movies.dat", _MOVIES_DAT)
    _write(tmp_path / "users.dat", _USERS_DAT)
    movies = load_movie_features("1m", source=tmp_path)
    np.testing.assert_array_equal(movies["movie_id"], [1, 2])
    np.testing.assert_array_equal(movies["year"], [2000, 1999])
    assert _genre_names(movies["genres"][0]) == ["Animation", "Children", "Comedy"]
    assert _genre_names(movies["genres"][1]) == ["Drama", "War"]
    users = load_user_features("1m", source=tmp_path)
    np.testing.assert_array_equal(users["user_id"], [1, 2, 3])
    np.testing.assert_array_equal(users["age"], [1, 56, 25])  # bucket codes
    assert users["gender"].tolist() == [b"F", b"M", b"M"]
    assert users["occupation"].tolist() == [b"K-12 student", b"self-employed", b"other"]
    assert users["zip"].tolist() == [b"48067", b"70072", b"55117-1234"]


@pytest.mark.parametrize("variant", ["20m", "25m"])
def test_csv_format_gives_movie_features_and_no_user_features(tmp_path, variant):
    _write(tmp_path / "movies.csv", _MOVIES_CSV)
    movies = load_movie_features(variant, source=tmp_path)
    np.testing.assert_array_equal(movies["movie_id"], [1, 2, 3, 4])
    np.testing.assert_array_equal(movies["year"], [1995, 1994, 0, 2007])
    assert _genre_names(movies["genres"][0]) == ["Adventure", "Children"]
    assert _genre_names(movies["genres"][1]) == ["Comedy", "IMAX"]
    assert _genre_names(movies["genres"][2]) == ["(no genres listed)"]
    assert movies["title"][2].decode("utf-8") == "Été"
    assert load_user_features(variant, source=tmp_path) is None


def test_features_read_from_a_zip_like_the_ratings(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "ml-1m.zip", "w") as archive:
        archive.writestr("ml-1m/movies.dat", _MOVIES_DAT)
        archive.writestr("ml-1m/users.dat", _USERS_DAT)
    np.testing.assert_array_equal(load_movie_features("1m", source=tmp_path / "ml-1m.zip")["movie_id"], [1, 2])
    np.testing.assert_array_equal(load_user_features("1m", source=tmp_path)["user_id"], [1, 2, 3])


# --- Bad input.


def test_unknown_genre_names_the_genre_the_file_and_the_line(tmp_path):
    _write(tmp_path / "movies.csv", b"movieId,title,genres\n1,A (1995),Drama\n2,B (1996),Drama|Cyberpunk\n")
    with pytest.raises(ValueError, match=r"Unknown genre 'Cyberpunk' in .*movies\.csv, line 3: genres must be"):
        load_movie_features("25m", source=tmp_path)


def test_empty_genre_in_movies_dat_is_an_unknown_genre(tmp_path):
    _write(tmp_path / "movies.dat", b"1::A (1995)::Drama\n2::B (1996)::\n")
    with pytest.raises(ValueError, match=r"Unknown genre '' in .*movies\.dat, line 2"):
        load_movie_features("1m", source=tmp_path)


def test_malformed_movies_line_names_the_file_and_line_in_one_line(tmp_path):
    _write(tmp_path / "u.item", _U_ITEM + b"50|Short|line\n")
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        load_movie_features("100k", source=tmp_path)
    assert raised.value.message.startswith("Malformed line in ")
    assert "u.item: line 5 is 50|Short|line" in raised.value.message and "\n" not in raised.value.message


def test_repeated_movie_id_names_both_lines(tmp_path):
    _write(tmp_path / "movies.dat", _MOVIES_DAT + b"1::Again (2001)::Drama\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"movies\.dat: line 3 repeats movie id 1 of line 1\."):
        load_movie_features("1m", source=tmp_path)


@pytest.mark.parametrize(
    "variant, name, content, line",
    [
        ("100k", "u.user", _U_USER + b"8|30|X|writer|12345\n", 4),  # gender not M/F
        ("100k", "u.user", b"1|24|M|technician\n", 1),  # a field missing: no silent shift of columns
        ("100k", "u.user", b"1|24|M||85711\n", 1),  # no occupation
        ("100k", "u.user", b"1|twenty|M|technician|85711\n", 1),
        ("1m", "users.dat", _USERS_DAT + b"4::M::30::1::12345\n", 4),  # 30 is not an age bucket
        ("1m", "users.dat", _USERS_DAT + b"4::M::25::21::12345\n", 4),  # occupation codes are 0..20
        ("1m", "users.dat", b"1::F::1::10\n", 1),
    ],
)
def test_malformed_user_line_names_the_file_and_line(tmp_path, variant, name, content, line):
    _write(tmp_path / name, content)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"Malformed line in .*{name}: line {line} is "):
        load_user_features(variant, source=tmp_path)


def test_repeated_user_id_names_the_file_and_both_lines(tmp_path):
    _write(tmp_path / "u.user", _U_USER + b"2|30|M|writer|12345\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"u\.user: line 4 repeats user id 2 of line 2\."):
        load_user_features("100k", source=tmp_path)


def test_missing_users_file_is_named_with_what_to_do(tmp_path):
    _write(tmp_path / "u.item", _U_ITEM)
    with pytest.raises(FileNotFoundError, match=r"MovieLens 100k users: u\.user not found"):
        load_user_features("100k", source=tmp_path)


def test_path_to_the_users_file_reads_its_folder(tmp_path):
    _write(tmp_path / "u.user", _U_USER)
    np.testing.assert_array_equal(load_user_features("100k", source=tmp_path / "u.user")["user_id"], [1, 2, 7])


# --- TFDS (shaped like TFDS's datasets; no download).


def test_tfds_movies_give_the_features_of_the_local_files(tmp_path, monkeypatch):
    _write(tmp_path / "u.item", _U_ITEM[: _U_ITEM.index(b"30|")])
    tfds_movies = tf.data.Dataset.from_tensor_slices({
        "movie_id": [b"10", b"20"],
        "movie_title": ["Misérables, Les (1995)".encode(), b"Re-release (1983)"],
        "movie_genres": tf.ragged.constant([[3, 4], [0, 19]], dtype=tf.int64),
    })  # fmt: skip
    monkeypatch.setattr(features.movielens, "_load_tfds", lambda name, data_dir: tfds_movies)
    from_tfds = load_movie_features("100k", source="tfds")
    from_files = load_movie_features("100k", source=tmp_path)
    for key in ("movie_id", "genres", "year", "title"):
        np.testing.assert_array_equal(from_tfds[key], from_files[key])


def test_tfds_users_come_once_per_user_from_the_ratings(monkeypatch):
    tfds_ratings = tf.data.Dataset.from_tensor_slices({
        "user_id": [b"7", b"1", b"7"],
        "movie_id": [b"10", b"10", b"20"],
        "raw_user_age": np.array([57.0, 24.0, 57.0], np.float32),
        "bucketized_user_age": np.array([56.0, 18.0, 56.0], np.float32),
        "user_gender": [True, False, True],
        "user_occupation_text": [b"administrator", b"technician", b"administrator"],
        "user_zip_code": [b"T8H1N", b"85711", b"T8H1N"],
    })  # fmt: skip
    names = []
    monkeypatch.setattr(features.movielens, "_load_tfds", lambda name, data_dir: names.append(name) or tfds_ratings)
    users = load_user_features("100k", source="tfds")
    assert names == ["movielens/100k-ratings"]
    np.testing.assert_array_equal(users["user_id"], [1, 7])
    np.testing.assert_array_equal(users["age"], [24, 57])
    assert users["gender"].tolist() == [b"F", b"M"]
    assert users["occupation"].tolist() == [b"technician", b"administrator"]
    assert users["zip"].tolist() == [b"85711", b"T8H1N"]
    one_m = features.tfds_user_features(tfds_ratings.map(lambda x: {k: v for k, v in x.items() if k != "raw_user_age"}))
    np.testing.assert_array_equal(one_m["age"], [18, 56])  # 1m's TFDS has only the bucket


def test_tfds_has_no_user_features_for_20m_and_25m(monkeypatch):
    monkeypatch.setattr(features.movielens, "_load_tfds", lambda name, data_dir: pytest.fail("must not load"))
    assert load_user_features("25m", source="tfds") is None
    assert load_user_features("20m", source="tfds") is None
