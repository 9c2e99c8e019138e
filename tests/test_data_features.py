"""Tests for tfrank.data.features: movie and user features of every format, history features, row alignment."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tfrank.data import (
    GENRES,
    MOVIE_HISTORY_KEYS,
    USER_HISTORY_KEYS,
    align_rows,
    features,
    from_memory,
    history_features,
    load_movie_features,
    load_ratings,
    load_user_features,
    split,
    synthetic,
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


# --- History features (training ratings only).

_DRAMA, _COMEDY, _WAR = GENRES.index("Drama"), GENRES.index("Comedy"), GENRES.index("War")


def _three_movies() -> dict[str, np.ndarray]:
    genres = np.zeros([3, len(GENRES)], np.float32)
    genres[0, _DRAMA] = genres[1, _COMEDY] = genres[2, [_DRAMA, _WAR]] = 1.0
    return {"movie_id": np.array([10, 20, 30]), "genres": genres}


def _ratings(users, movies, stars) -> dict[str, np.ndarray]:
    return {"user_id": np.array(users, np.int64), "movie_id": np.array(movies, np.int64),
            "user_rating": np.array(stars, np.float32)}  # fmt: skip


def test_history_features_match_hand_computed_means_and_shrunk_affinities():
    # User 1: 5 stars on 10 (Drama), 1 on 20 (Comedy), 3 on 30 (Drama, War): mean 3. User 2: 4 on 10.
    history = history_features(_ratings([1, 1, 1, 2], [10, 20, 30, 10], [5, 1, 3, 4]), _three_movies(), shrinkage=1.0)
    np.testing.assert_array_equal(history["user_id"], [1, 2])
    np.testing.assert_array_equal(history["num_ratings"], [3, 1])
    np.testing.assert_allclose(history["mean_rating"], [3.0, 4.0])
    affinity = history["genre_affinity"]
    assert affinity.shape == (2, len(GENRES)) and affinity.dtype == np.float32
    # Drama: deviations +2 and 0 over 2 ratings, shrunk by 1: 2 / 3. Comedy: -2 / 2. War: 0 / 2.
    np.testing.assert_allclose(affinity[0, [_DRAMA, _COMEDY, _WAR]], [2 / 3, -1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(affinity[1, _DRAMA], 0.0)  # one rating equal to the user's own mean
    assert np.count_nonzero(affinity[:, [g for g in range(len(GENRES)) if g not in (_DRAMA, _COMEDY, _WAR)]]) == 0
    np.testing.assert_array_equal(history["movie_id"], [10, 20, 30])
    np.testing.assert_array_equal(history["movie_num_ratings"], [2, 1, 1])
    np.testing.assert_allclose(history["global_mean_rating"], 13 / 4)
    # (sum + shrinkage * global mean) / (count + shrinkage)
    np.testing.assert_allclose(history["movie_mean_rating"], [(9 + 3.25) / 3, (1 + 3.25) / 2, (3 + 3.25) / 2],
                               rtol=1e-6)  # fmt: skip


def test_history_without_shrinkage_is_the_plain_genre_mean_minus_the_user_mean():
    history = history_features(_ratings([1, 1, 1], [10, 20, 30], [5, 1, 3]), _three_movies(), shrinkage=0.0)
    np.testing.assert_allclose(history["genre_affinity"][0, [_DRAMA, _COMEDY, _WAR]], [4 - 3, 1 - 3, 3 - 3])
    np.testing.assert_allclose(history["movie_mean_rating"], [5, 1, 3])


def test_movie_mean_baseline_compares_each_rating_with_the_movies_shrunk_mean():
    # Movie 10: 5 and 4 stars; with shrinkage 1 and global mean 13/4 its mean is (9 + 3.25) / 3.
    history = history_features(_ratings([1, 1, 1, 2], [10, 20, 30, 10], [5, 1, 3, 4]), _three_movies(), shrinkage=1.0,
                               affinity_baseline="movie_mean")  # fmt: skip
    mean_10, mean_20, mean_30 = (9 + 3.25) / 3, (1 + 3.25) / 2, (3 + 3.25) / 2
    np.testing.assert_allclose(
        history["genre_affinity"][0, [_DRAMA, _COMEDY, _WAR]],
        [((5 - mean_10) + (3 - mean_30)) / 3, (1 - mean_20) / 2, (3 - mean_30) / 2], rtol=1e-6,
    )  # fmt: skip
    np.testing.assert_allclose(history["genre_affinity"][1, _DRAMA], (4 - mean_10) / 2, rtol=1e-6)
    np.testing.assert_allclose(history["mean_rating"], [3.0, 4.0])  # the other features do not change


def test_unknown_affinity_baseline_is_rejected():
    with pytest.raises(ValueError, match=r"affinity_baseline='median': must be one of user_mean, movie_mean"):
        history_features(_ratings([1], [10], [4]), _three_movies(), affinity_baseline="median")


def test_more_shrinkage_pulls_affinities_toward_zero_and_movie_means_toward_the_global_mean():
    ratings = _ratings([1, 1, 1], [10, 20, 30], [5, 1, 3])
    weak, strong = (history_features(ratings, _three_movies(), shrinkage=s) for s in (1.0, 100.0))
    assert np.abs(strong["genre_affinity"]).sum() < 0.05 * np.abs(weak["genre_affinity"]).sum()
    np.testing.assert_allclose(strong["movie_mean_rating"], 3.0, atol=0.05)


def test_a_pair_rated_twice_counts_once_with_its_latest_rating():
    ratings = {**_ratings([1, 1, 1], [10, 10, 20], [1, 5, 3]), "timestamp": np.array([100, 200, 150], np.int64)}
    history = history_features(ratings, _three_movies(), shrinkage=0.0)
    np.testing.assert_array_equal(history["num_ratings"], [2])
    np.testing.assert_allclose(history["mean_rating"], [4.0])  # 5 (the later of 1 and 5) and 3


def test_history_reads_a_split_dataset_like_the_columns():
    columns = synthetic.generate_ratings(num_users=30, num_movies=60, num_ratings=900, seed=1)
    movies = synthetic.movie_features(num_users=30, num_movies=60, num_ratings=900, seed=1)
    from_columns = history_features(columns, movies)
    from_dataset = history_features(from_memory({k: tf.constant(v) for k, v in columns.items()}, 64), movies)
    for key in from_columns:
        np.testing.assert_array_equal(from_columns[key], from_dataset[key])


def _history_of_the_training_split(ratings: dict[str, np.ndarray], movies: dict[str, np.ndarray],
                                   affinity_baseline: str) -> dict:  # fmt: skip
    train, _, _ = split(from_memory({k: tf.constant(v) for k, v in ratings.items()}), seed=42)
    return history_features(train, movies, affinity_baseline=affinity_baseline)


def _split_part(ratings: dict[str, np.ndarray]) -> np.ndarray:
    """0 for training, 1 for validation, 2 for test: which part split(seed=42) gives each rating."""
    tagged = {**ratings, "row": np.arange(len(ratings["user_id"]))}
    parts = split(from_memory({k: tf.constant(v) for k, v in tagged.items()}), seed=42)
    part_of = np.empty(len(ratings["user_id"]), np.int64)
    for index, part in enumerate(parts):
        part_of[np.concatenate([batch["row"] for batch in part.batch(1 << 20).as_numpy_iterator()])] = index
    return part_of


def _another_rating(stars: np.ndarray) -> np.ndarray:
    """A different star rating for each of ``stars`` (1 -> 2, ..., 4 -> 5, 5 -> 1)."""
    return stars % 5 + 1


@pytest.mark.parametrize("affinity_baseline", ["user_mean", "movie_mean"])
def test_no_validation_or_test_rating_enters_a_history_feature(affinity_baseline):
    ratings = synthetic.generate_ratings(num_users=40, num_movies=80, num_ratings=1600, seed=2)
    movies = synthetic.movie_features(num_users=40, num_movies=80, num_ratings=1600, seed=2)
    part = _split_part(ratings)
    assert (part == 0).any() and (part == 1).any() and (part == 2).any()
    before = _history_of_the_training_split(ratings, movies, affinity_baseline)

    held_out = {**ratings, "user_rating": ratings["user_rating"].copy()}
    held_out["user_rating"][part > 0] = _another_rating(held_out["user_rating"][part > 0])
    after = _history_of_the_training_split(held_out, movies, affinity_baseline)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)

    trained = {**ratings, "user_rating": ratings["user_rating"].copy()}
    first_train = int(np.flatnonzero(part == 0)[0])
    trained["user_rating"][first_train] = _another_rating(trained["user_rating"][first_train])
    changed = _history_of_the_training_split(trained, movies, affinity_baseline)
    for key in ("mean_rating", "genre_affinity", "movie_mean_rating", "global_mean_rating"):
        assert not np.array_equal(before[key], changed[key]), key


def test_ml100k_history_features_come_from_the_training_split(movielens_dir):
    movies = load_movie_features("100k", source=movielens_dir)
    train, _, _ = split(load_ratings("100k", source=movielens_dir))
    history = history_features(train, movies)
    assert history["num_ratings"].sum() == history["movie_num_ratings"].sum() < 100_000
    assert 69_000 < history["num_ratings"].sum() < 71_000
    assert len(history["user_id"]) == 943
    assert 3.4 < history["global_mean_rating"] < 3.7
    assert np.isfinite(history["genre_affinity"]).all() and np.abs(history["genre_affinity"]).max() < 4


def test_rated_movie_without_features_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"1 rated movies are not in movie_features \(ids \[99\]"):
        history_features(_ratings([1, 1], [10, 99], [4, 3]), _three_movies())


@pytest.mark.parametrize("shrinkage", [-1.0, float("nan")])
def test_negative_shrinkage_is_rejected(shrinkage):
    with pytest.raises(ValueError, match="shrinkage=.*must be >= 0"):
        history_features(_ratings([1], [10], [4]), _three_movies(), shrinkage=shrinkage)


def test_empty_training_ratings_are_rejected():
    with pytest.raises(ValueError, match="train_ratings is empty"):
        history_features(_ratings([], [], []), _three_movies())


# --- Aligning features to embedding rows.


def test_rows_follow_the_vocabulary_with_row_0_and_missing_ids_at_the_default():
    movies = {"movie_id": np.array([30, 10, 20]), "year": np.array([2001, 1995, 1990]),
              "title": np.array([b"C", b"A", b"B"], object), "genres": np.eye(3, dtype=np.float32)}  # fmt: skip
    rows = align_rows([20, 30, 99], movies, "movie_id")
    assert set(rows) == {"year", "title", "genres"}
    np.testing.assert_array_equal(rows["year"], [0, 1990, 2001, 0])
    assert rows["title"].tolist() == [b"", b"B", b"C", b""]
    np.testing.assert_array_equal(rows["genres"], [[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    assert rows.num_missing == 1 and rows.missing_ids.tolist() == [99]
    assert rows["year"].dtype == np.int64 and rows["genres"].dtype == np.float32


def test_mean_default_is_the_mean_row_of_the_features():
    movies = {"movie_id": np.array([1, 2]), "year": np.array([1990, 1995]),
              "genres": np.array([[1, 0], [1, 1]], np.float32)}  # fmt: skip
    rows = align_rows([2, 7], movies, "movie_id", default="mean")
    np.testing.assert_array_equal(rows["year"], [1992, 1995, 1992])  # 1992.5 rounds to even
    np.testing.assert_array_equal(rows["genres"], [[1, 0.5], [1, 1], [1, 0.5]])


def test_history_rows_take_the_global_mean_for_movies_never_rated():
    history = history_features(_ratings([1, 1, 2], [10, 20, 10], [5, 1, 4]), _three_movies(), shrinkage=0.0)
    default = {"movie_mean_rating": history["global_mean_rating"]}
    movie_rows = align_rows([10, 30], history, "movie_id", default=default, keys=MOVIE_HISTORY_KEYS)
    np.testing.assert_allclose(movie_rows["movie_mean_rating"], [10 / 3, 4.5, 10 / 3], rtol=1e-6)
    np.testing.assert_array_equal(movie_rows["movie_num_ratings"], [0, 2, 0])
    assert movie_rows.missing_ids.tolist() == [30]
    user_rows = align_rows([2, 1], history, "user_id", keys=USER_HISTORY_KEYS)
    np.testing.assert_array_equal(user_rows["num_ratings"], [0, 1, 2])
    assert user_rows["genre_affinity"].shape == (3, len(GENRES)) and user_rows.num_missing == 0


def test_features_of_another_length_than_the_ids_need_keys():
    history = history_features(_ratings([1, 2, 3], [10, 20, 20], [5, 1, 4]), _three_movies())
    with pytest.raises(ValueError, match=r"feature 'movie_id' has shape \(2,\) but there are 3 ids in 'user_id'"):
        align_rows([1], history, "user_id")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(id_key="user_id"), r"id_key='user_id' is not a feature"),
        (dict(id_key="movie_id", default="median"), r"default='median': must be"),
        (dict(id_key="movie_id", keys=["rating"]), r"keys has 'rating': not a feature"),
    ],
)
def test_bad_alignment_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        align_rows([1], {"movie_id": np.array([1, 2]), "year": np.array([1, 2])}, **kwargs)


def test_repeated_feature_ids_are_rejected_not_silently_picked():
    with pytest.raises(ValueError, match=r"features\['movie_id'\] repeats ids \[2\]"):
        align_rows([1], {"movie_id": np.array([1, 2, 2]), "year": np.array([1, 2, 3])}, "movie_id")


def test_ml100k_features_align_to_a_model_vocabulary(movielens_dir):
    movies = load_movie_features("100k", source=movielens_dir)
    vocabulary = np.array([50, 1, 100_000])  # 100000 is no MovieLens 100K movie
    rows = align_rows(vocabulary, movies, "movie_id")
    assert rows["title"][1] == b"Star Wars (1977)" and rows["title"][2] == b"Toy Story (1995)"
    assert rows["year"].tolist() == [0, 1977, 1995, 0] and rows.missing_ids.tolist() == [100_000]


@pytest.mark.parametrize("graph", [False, True])
def test_aligned_rows_are_the_rows_ranking_model_looks_ids_up_in(graph):
    from tfrank.models import RankingModel

    movies = {"movie_id": np.array([30, 10, 20]), "year": np.array([2001, 1995, 1990])}
    model = RankingModel(user_vocabulary=[1, 2], movie_vocabulary=[20, 10, 40], embedding_dim=2)
    rows = align_rows(model.movie_vocabulary, movies, "movie_id")
    years = tf.constant(rows["year"])

    def year_of(movie_ids: tf.Tensor) -> tf.Tensor:
        return tf.gather(years, model.movie_rows.lookup(movie_ids))

    lookup = tf.function(year_of) if graph else year_of
    # 40 is in the vocabulary but has no features, 30 has features but is not in the vocabulary, 77 is neither.
    np.testing.assert_array_equal(lookup(tf.constant([10, 20, 40, 30, 77], tf.int64)), [1995, 1990, 0, 0, 0])
    assert rows.missing_ids.tolist() == [40]
