"""Tests for tfrank.data.synthetic: the shape of the generated ratings and the ml-25m style files."""

import numpy as np
import pytest

from tfrank.data import (
    GENRES,
    OCCUPATIONS_1M,
    history_features,
    load_movie_features,
    load_movies,
    load_ratings,
    synthetic,
)


@pytest.fixture(scope="module")
def ratings() -> dict[str, np.ndarray]:
    return synthetic.generate_ratings(num_users=300, num_movies=1500, num_ratings=30_000, seed=0)


def test_sizes_ids_and_value_ranges(ratings):
    assert all(len(column) == 30_000 for column in ratings.values())
    assert ratings["user_id"].dtype == np.int64 and ratings["user_rating"].dtype == np.float32
    assert ratings["user_id"].min() == 1 and ratings["user_id"].max() == 300
    assert 1 <= ratings["movie_id"].min() and ratings["movie_id"].max() <= 1500
    assert set(np.unique(ratings["user_rating"])) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert np.all(ratings["timestamp"] >= 789_652_009)


def test_every_user_has_at_least_20_distinct_movies(ratings):
    keys = ratings["user_id"] * 10_000 + ratings["movie_id"]
    assert len(np.unique(keys)) == len(keys)
    assert np.all(np.diff(keys) > 0)  # sorted by user, then movie
    assert np.bincount(ratings["user_id"])[1:].min() >= 20


def test_movie_popularity_and_user_activity_are_long_tailed(ratings):
    per_movie = np.sort(np.bincount(ratings["movie_id"], minlength=1501)[1:])[::-1]
    assert per_movie[:150].sum() > 0.35 * per_movie.sum()  # the top 10% of movies
    per_user = np.bincount(ratings["user_id"])[1:]
    assert per_user.max() > 4 * np.median(per_user)


def test_ratings_carry_a_learnable_movie_signal(ratings):
    # Movie means learned on even rows predict odd rows better than the global mean.
    train = np.arange(len(ratings["movie_id"])) % 2 == 0
    movies, stars = ratings["movie_id"], ratings["user_rating"]
    sums = np.bincount(movies[train], weights=stars[train], minlength=1501)
    counts = np.bincount(movies[train], minlength=1501)
    global_mean = stars[train].mean()
    movie_mean = np.where(counts > 0, (sums + 5 * global_mean) / (counts + 5), global_mean)
    test_stars = stars[~train]
    baseline = np.mean((test_stars - global_mean) ** 2)
    assert np.mean((test_stars - movie_mean[movies[~train]]) ** 2) < 0.85 * baseline


def test_same_seed_same_ratings_other_seed_other_ratings(ratings):
    again = synthetic.generate_ratings(num_users=300, num_movies=1500, num_ratings=30_000, seed=0)
    other = synthetic.generate_ratings(num_users=300, num_movies=1500, num_ratings=30_000, seed=1)
    for key in ratings:
        assert ratings[key].tobytes() == again[key].tobytes()
    assert not np.array_equal(ratings["movie_id"], other["movie_id"])


def test_csv_files_read_back_as_the_generated_ratings(tmp_path):
    directory = synthetic.write_movielens_csv(tmp_path / "syn", num_users=50, num_movies=400, num_ratings=2000, seed=4)
    assert (directory / "ratings.csv").read_text().splitlines()[0] == "userId,movieId,rating,timestamp"
    expected = synthetic.generate_ratings(num_users=50, num_movies=400, num_ratings=2000, seed=4)
    read = next(load_ratings("25m", source=directory, batch_size=10_000).as_numpy_iterator())
    for key in expected:
        np.testing.assert_array_equal(read[key], expected[key])
    movies = list(load_movies("25m", source=directory).as_numpy_iterator())
    assert len(movies) == 400
    titles = {int(m["movie_id"]): m["movie_title"].decode("utf-8") for m in movies}
    assert titles[7].startswith("Synthetic Film 7, The (")  # quoted in the file: it has a comma
    assert titles[11].startswith("Café Synthétique 11 (")


def test_ratings_dataset_has_the_ratings_schema():
    dataset = synthetic.ratings_dataset(num_users=10, num_movies=100, num_ratings=300, seed=0)
    spec = load_ratings.__doc__  # the schema documented on load_ratings
    assert "user_rating" in spec
    assert {k: (v.dtype.name, v.shape.rank) for k, v in dataset.element_spec.items()} == {
        "user_id": ("int64", 0), "movie_id": ("int64", 0), "user_rating": ("float32", 0), "timestamp": ("int64", 0)
    }  # fmt: skip


@pytest.mark.parametrize(
    "sizes, message",
    [
        ((0, 100, 100), r"num_users=0: must be >= 1"),
        ((10, 10, 150), r"num_movies=10: must be >= min_ratings_per_user=20"),
        ((10, 100, 150), r"num_ratings=150: must be >= num_users \* min_ratings_per_user = 200"),
        ((10, 100, 600), r"num_ratings=600: must be <= num_users \* num_movies / 2 = 500"),
    ],
)
def test_impossible_sizes_are_rejected(sizes, message):
    with pytest.raises(ValueError, match=message):
        synthetic.generate_ratings(*sizes)


def test_ratings_dataset_defaults_to_movielens_100k_sizes_in_the_load_ratings_schema(tmp_path):
    dataset = synthetic.ratings_dataset(seed=5)
    (tmp_path / "u.data").write_bytes(b"1\t10\t4\t881250949\n")
    assert dataset.element_spec == load_ratings("100k", source=tmp_path).element_spec
    columns = next(synthetic.ratings_dataset(seed=5, batch_size=1 << 20).as_numpy_iterator())
    assert len(columns["user_id"]) == 100_000
    assert len(np.unique(columns["user_id"])) == 943 and columns["movie_id"].max() <= 1682
    assert np.bincount(columns["user_id"])[1:].min() >= 20
    first = next(iter(dataset))
    assert {key: value.numpy() for key, value in first.items()} == {key: columns[key][0] for key in columns}
    again = next(synthetic.ratings_dataset(seed=5, batch_size=1 << 20).as_numpy_iterator())
    other = next(synthetic.ratings_dataset(seed=6, batch_size=1 << 20).as_numpy_iterator())
    assert all(columns[key].tobytes() == again[key].tobytes() for key in columns)
    assert not np.array_equal(columns["movie_id"], other["movie_id"])


def _factorise(users, movies, residuals, num_users, num_movies, rank=8, steps=8, l2=5.0):
    """Alternating least squares on rating residuals: user and movie factors whose products fit them."""
    rng = np.random.default_rng(0)
    user_factors = rng.normal(scale=0.1, size=(num_users + 1, rank))
    movie_factors = rng.normal(scale=0.1, size=(num_movies + 1, rank))

    def solve(own, other, other_factors, size):
        factors = np.zeros((size + 1, rank))
        for index in np.unique(own):
            rows = own == index
            x = other_factors[other[rows]]
            factors[index] = np.linalg.solve(x.T @ x + l2 * np.eye(rank), x.T @ residuals[rows])
        return factors

    for _ in range(steps):
        user_factors = solve(users, movies, movie_factors, num_users)
        movie_factors = solve(movies, users, user_factors, num_movies)
    return user_factors, movie_factors


def test_ratings_carry_planted_user_movie_preferences_beyond_movie_means(ratings):
    # A model of each user's taste (factors fitted on even rows) predicts odd rows better than movie means alone:
    # what a ranking model must learn to beat a popularity ranking.
    train = np.arange(len(ratings["movie_id"])) % 2 == 0
    users, movies, stars = ratings["user_id"], ratings["movie_id"], ratings["user_rating"].astype(np.float64)
    sums = np.bincount(movies[train], weights=stars[train], minlength=1501)
    counts = np.bincount(movies[train], minlength=1501)
    movie_mean = (sums + 5 * stars[train].mean()) / (counts + 5)
    residuals = stars - movie_mean[movies]
    user_factors, movie_factors = _factorise(users[train], movies[train], residuals[train], 300, 1500)
    predicted = np.einsum("ij,ij->i", user_factors[users[~train]], movie_factors[movies[~train]])
    movie_mean_error = np.mean(residuals[~train] ** 2)
    assert np.mean((residuals[~train] - predicted) ** 2) < 0.9 * movie_mean_error


# --- Movie and user features planted with the ratings.


def test_movie_features_have_the_load_movie_features_schema_and_one_to_three_genres():
    movies = synthetic.movie_features(num_users=300, num_movies=1500, num_ratings=30_000, seed=0)
    np.testing.assert_array_equal(movies["movie_id"], np.arange(1, 1501))
    assert movies["genres"].shape == (1500, len(GENRES)) and movies["genres"].dtype == np.float32
    per_movie = movies["genres"].sum(axis=1)
    assert per_movie.min() == 1 and per_movie.max() == 3
    assert movies["genres"][:, [GENRES.index("Unknown"), GENRES.index("(no genres listed)")]].sum() == 0
    assert movies["year"].dtype == np.int64 and 1920 <= movies["year"].min() and movies["year"].max() <= 2019
    assert movies["title"][0] == f"Synthetic Film 1 ({movies['year'][0]})".encode()


def test_features_are_deterministic_and_leave_the_ratings_unchanged():
    sizes = dict(num_users=60, num_movies=200, num_ratings=2000)
    first = {**synthetic.movie_features(**sizes, seed=3), **synthetic.user_features(**sizes, seed=3)}
    again = {**synthetic.movie_features(**sizes, seed=3), **synthetic.user_features(**sizes, seed=3)}
    other = synthetic.movie_features(**sizes, seed=4)
    for key in first:
        assert first[key].tolist() == again[key].tolist(), key
    assert not np.array_equal(first["genres"], other["genres"])


def test_user_genre_affinities_predict_held_out_ratings_beyond_movie_means(ratings):
    # Genre affinities from even rows (history_features) explain part of the odd rows' residuals from movie means:
    # the planted genres carry the users' taste.
    movies = synthetic.movie_features(num_users=300, num_movies=1500, num_ratings=30_000, seed=0)
    train = np.arange(len(ratings["movie_id"])) % 2 == 0
    history = history_features({key: column[train] for key, column in ratings.items()}, movies, shrinkage=5.0)
    users, items, stars = ratings["user_id"][~train], ratings["movie_id"][~train], ratings["user_rating"][~train]
    user_row = np.searchsorted(history["user_id"], users)
    movie_row = np.searchsorted(history["movie_id"], items)
    known = history["movie_id"][np.minimum(movie_row, len(history["movie_id"]) - 1)] == items
    movie_mean = np.where(known, history["movie_mean_rating"][np.minimum(movie_row, len(movie_row) - 1)],
                          history["global_mean_rating"])  # fmt: skip
    genre_score = (history["genre_affinity"][user_row] * movies["genres"][items - 1]).sum(axis=1)
    genre_score /= np.maximum(movies["genres"][items - 1].sum(axis=1), 1)
    residual = stars - movie_mean
    correlation = np.corrcoef(genre_score, residual)[0, 1]
    assert correlation > 0.2  # random genres give about 0


def test_user_features_have_the_load_user_features_schema():
    users = synthetic.user_features(num_users=500, num_movies=300, num_ratings=12_000, seed=1)
    np.testing.assert_array_equal(users["user_id"], np.arange(1, 501))
    assert users["age"].dtype == np.int64 and 7 <= users["age"].min() and users["age"].max() <= 73
    assert set(users["gender"]) == {b"M", b"F"} and 0.5 < np.mean(users["gender"] == b"M") < 0.85
    assert set(users["occupation"]) <= {name.encode() for name in OCCUPATIONS_1M}
    assert all(len(zip_code) == 5 and zip_code.isdigit() for zip_code in users["zip"])


def test_csv_movies_read_back_as_the_movie_features(tmp_path):
    directory = synthetic.write_movielens_csv(tmp_path / "syn", num_users=50, num_movies=400, num_ratings=2000, seed=4)
    expected = synthetic.movie_features(num_users=50, num_movies=400, num_ratings=2000, seed=4)
    read = load_movie_features("25m", source=directory)
    for key in ("movie_id", "genres", "year"):
        np.testing.assert_array_equal(read[key], expected[key])
    assert read["title"].tolist() == expected["title"].tolist()
