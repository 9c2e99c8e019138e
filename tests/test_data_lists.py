"""Tests for tfrank.data.lists: the hash split, seeded per-user list sampling, and list batching."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT

from tfrank.data import _tfdata, batch_lists, from_memory, load_ratings, sample_lists, split, synthetic
from tfrank.ops import PADDING_ID, PADDING_LABEL


def _ratings_columns(dataset: tf.data.Dataset) -> dict[str, np.ndarray]:
    if dataset.element_spec["user_id"].shape.rank == 0:
        dataset = dataset.batch(65536)
    batches = list(dataset.as_numpy_iterator())
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def _lists(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_id [L], movie_id [L, k], labels [L, k]) of fixed-size lists, from elements or batches."""
    if dataset.element_spec[1].shape.rank == 1:
        dataset = dataset.batch(65536)
    users, movies, labels = [], [], []
    for features, batch_labels in dataset.as_numpy_iterator():
        users.append(features["user_id"]), movies.append(features["movie_id"]), labels.append(batch_labels)
    return np.concatenate(users), np.concatenate(movies), np.concatenate(labels)


@pytest.fixture(scope="module")
def small_ratings() -> dict[str, np.ndarray]:
    """Synthetic ratings where some users have fewer than 10 ratings."""
    return synthetic.generate_ratings(num_users=80, num_movies=400, num_ratings=2400, seed=3, min_ratings_per_user=3)


@pytest.fixture(scope="module")
def ml100k_columns(movielens_dir) -> dict[str, np.ndarray]:
    return next(load_ratings("100k", source=movielens_dir, batch_size=1 << 20).as_numpy_iterator())


# --- split


def test_split_parts_are_disjoint_and_cover_every_rating(movielens_dir, ml100k_columns):
    parts = split(load_ratings("100k", source=movielens_dir, batch_size=8192), (0.7, 0.15, 0.15), seed=42)
    columns = [_ratings_columns(p) for p in parts]
    keys = [c["user_id"] * 10_000 + c["movie_id"] for c in columns]
    all_keys = ml100k_columns["user_id"] * 10_000 + ml100k_columns["movie_id"]
    assert sum(len(k) for k in keys) == 100_000
    assert np.array_equal(np.sort(np.concatenate(keys)), np.sort(all_keys))
    for size, expected in zip(map(len, keys), (70_000, 15_000, 15_000)):
        assert abs(size - expected) < 800


def test_split_is_the_same_for_elements_and_batches(small_ratings):
    per_element = split(tf.data.Dataset.from_tensor_slices(small_ratings), (0.5, 0.5), seed=7)
    batched = split(tf.data.Dataset.from_tensor_slices(small_ratings).batch(333), (0.5, 0.5), seed=7)
    for a, b in zip(per_element, batched):
        a, b = _ratings_columns(a), _ratings_columns(b)
        np.testing.assert_array_equal(a["movie_id"], b["movie_id"])
        np.testing.assert_array_equal(a["user_rating"], b["user_rating"])


def test_split_depends_on_the_seed_not_on_the_order(small_ratings):
    order = np.random.default_rng(0).permutation(len(small_ratings["user_id"]))
    shuffled = {k: v[order] for k, v in small_ratings.items()}
    train = _ratings_columns(split(tf.data.Dataset.from_tensor_slices(small_ratings), seed=1)[0])
    train_shuffled = _ratings_columns(split(tf.data.Dataset.from_tensor_slices(shuffled), seed=1)[0])
    train_other_seed = _ratings_columns(split(tf.data.Dataset.from_tensor_slices(small_ratings), seed=2)[0])

    def pairs(c):
        return set(zip(c["user_id"].tolist(), c["movie_id"].tolist()))

    assert pairs(train) == pairs(train_shuffled)
    assert pairs(train) != pairs(train_other_seed)


@pytest.mark.parametrize("fractions", [(0.7, 0.2), (0.5, 0.6, -0.1), ()])
def test_split_rejects_fractions_that_do_not_sum_to_one(fractions):
    with pytest.raises(ValueError, match=r"fractions=.*must be positive and sum to 1"):
        split(tf.data.Dataset.from_tensor_slices({"user_id": [1], "movie_id": [2]}), fractions)


# --- sample_lists on MovieLens 100K


@pytest.fixture(scope="module")
def ml100k_lists(movielens_dir):
    ratings = load_ratings("100k", source=movielens_dir, batch_size=8192)
    return _lists(sample_lists(ratings, list_size=5, num_lists_per_user=50, seed=11, batch_size=4096))


def test_every_list_is_of_one_user_with_distinct_rated_movies_and_their_labels(ml100k_columns, ml100k_lists):
    users, movies, labels = ml100k_lists
    assert movies.shape == (943 * 50, 5) and labels.shape == (943 * 50, 5)
    # Look every (user, movie) of every list up among the user's ratings.
    rated_keys = ml100k_columns["user_id"] * 10_000 + ml100k_columns["movie_id"]
    order = np.argsort(rated_keys)
    list_keys = users[:, None] * 10_000 + movies
    found = np.searchsorted(rated_keys[order], list_keys)
    assert np.array_equal(rated_keys[order][found], list_keys)  # each movie was rated by the list's user
    expected_labels = (ml100k_columns["user_rating"][order][found] - 1.0) / 4.0
    np.testing.assert_allclose(labels, expected_labels)
    sorted_movies = np.sort(movies, axis=1)
    assert np.all(sorted_movies[:, 1:] != sorted_movies[:, :-1])  # distinct within a list


def test_each_user_gets_exactly_num_lists_per_user(ml100k_lists):
    users, _, _ = ml100k_lists
    ids, counts = np.unique(users, return_counts=True)
    assert len(ids) == 943 and np.all(counts == 50)


def test_same_seed_gives_the_same_bytes_and_another_seed_other_lists(movielens_dir, ml100k_lists):
    ratings = load_ratings("100k", source=movielens_dir, batch_size=30_000)  # other batches, same lists
    again = _lists(sample_lists(ratings, list_size=5, num_lists_per_user=50, seed=11))
    for a, b in zip(ml100k_lists, again):
        assert a.tobytes() == b.tobytes()
    other = _lists(sample_lists(ratings, list_size=5, num_lists_per_user=50, seed=12))
    assert np.array_equal(other[0], again[0])
    assert np.mean(np.any(other[1] != again[1], axis=1)) > 0.9


# --- sample_lists on synthetic data


def test_users_below_min_list_size_are_dropped(small_ratings):
    ids, counts = np.unique(small_ratings["user_id"], return_counts=True)
    assert np.any(counts < 10) and np.any(counts >= 10)
    users, movies, _ = _lists(sample_lists(
        tf.data.Dataset.from_tensor_slices(small_ratings), list_size=4, num_lists_per_user=3, min_list_size=10
    ))  # fmt: skip
    kept, lists_per_user = np.unique(users, return_counts=True)
    np.testing.assert_array_equal(kept, ids[counts >= 10])
    assert np.all(lists_per_user == 3) and movies.shape == (3 * len(kept), 4)


def test_lists_of_a_user_do_not_depend_on_other_users_or_user_order(small_ratings):
    blocks = np.split(np.arange(len(small_ratings["user_id"])),
                      np.flatnonzero(np.diff(small_ratings["user_id"])) + 1)  # fmt: skip
    reversed_users = np.concatenate(blocks[::-1])  # users in reverse order, each user's ratings in order
    reordered = {k: v[reversed_users] for k, v in small_ratings.items()}
    a = _lists(sample_lists(tf.data.Dataset.from_tensor_slices(small_ratings), 3, 4, 3, seed=5))
    b = _lists(sample_lists(tf.data.Dataset.from_tensor_slices(reordered).batch(64), 3, 4, 3, seed=5))
    order_a, order_b = np.argsort(a[0], kind="stable"), np.argsort(b[0], kind="stable")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[order_a], y[order_b])


def test_every_movie_and_every_position_is_drawn_about_equally():
    ratings = {
        "user_id": np.full(6, 42, np.int64),
        "movie_id": np.arange(100, 106, dtype=np.int64),
        "user_rating": np.array([1, 2, 3, 4, 5, 5], np.float32),
    }
    _, movies, _ = _lists(sample_lists(tf.data.Dataset.from_tensor_slices(ratings), 5, 3000, 5, seed=0))
    left_out = 6 * 3000 - np.bincount((movies - 100).ravel(), minlength=6) * 6 / 5
    assert np.all(np.abs(np.bincount((movies - 100).ravel(), minlength=6) / (3000 * 5) - 1 / 6) < 0.02), left_out
    for position in range(5):
        share = np.bincount(movies[:, position] - 100, minlength=6) / 3000
        assert np.all(np.abs(share - 1 / 6) < 0.04)


def test_full_lists_hold_all_of_each_users_ratings(small_ratings):
    lists = sample_lists(tf.data.Dataset.from_tensor_slices(small_ratings), list_size=None, min_list_size=1)
    assert lists.element_spec[0]["movie_id"].shape.as_list() == [None]
    assert lists.element_spec[1].shape.as_list() == [None]
    got = list(lists.as_numpy_iterator())
    users = small_ratings["user_id"]
    assert [f["user_id"] for f, _ in got] == np.unique(users).tolist()
    for features, labels in got:
        mine = users == features["user_id"]
        np.testing.assert_array_equal(features["movie_id"], small_ratings["movie_id"][mine])
        np.testing.assert_allclose(labels, (small_ratings["user_rating"][mine] - 1) / 4)


def test_full_lists_in_batches_are_ragged(small_ratings):
    batches = sample_lists(tf.data.Dataset.from_tensor_slices(small_ratings), None, min_list_size=1, batch_size=32)
    first = next(iter(batches))
    assert isinstance(first[1], tf.RaggedTensor) and first[1].shape[0] == 32
    assert sum(int(labels.nrows()) for _, labels in batches) == 80


def test_half_star_labels_are_floored_at_zero_not_padding():
    ratings = {"user_id": np.ones(3, np.int64), "movie_id": np.arange(3, dtype=np.int64),
               "user_rating": np.array([0.5, 1.0, 5.0], np.float32)}  # fmt: skip
    (_, movies, labels) = _lists(sample_lists(tf.data.Dataset.from_tensor_slices(ratings), 3, 1, 3))
    np.testing.assert_array_equal(labels[0][np.argsort(movies[0])], [0.0, 0.0, 1.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"list_size": 0}, r"list_size=0: must be >= 1"),
        ({"num_lists_per_user": 0}, r"num_lists_per_user=0: must be >= 1"),
        ({"list_size": None, "min_list_size": 0}, r"min_list_size=0: must be >= 1"),
        ({"list_size": 5, "min_list_size": 3}, r"min_list_size=3 < list_size=5.*set min_list_size >= 5"),
        ({"batch_size": 0}, r"batch_size=0: must be >= 1"),
    ],
)
def test_sample_lists_rejects_bad_arguments(kwargs, message):
    ratings = tf.data.Dataset.from_tensor_slices({"user_id": [1], "movie_id": [2], "user_rating": [3.0]})
    with pytest.raises(ValueError, match=message):
        sample_lists(ratings, **kwargs)


def test_lists_built_inside_a_tf_function_equal_the_eager_ones(small_ratings):
    def checksums(ratings: tf.data.Dataset, list_size):
        train, _ = split(ratings, (0.6, 0.4), seed=5)
        lists = sample_lists(train, list_size, num_lists_per_user=3, min_list_size=4, seed=9, batch_size=50)
        # Order-sensitive sums over every list: the same lists in the same order give the same numbers.
        return lists.reduce((tf.constant(0, tf.int64), tf.constant(0.0)), lambda total, batch: (
            total[0] + tf.reduce_sum(tf.cumsum(tf.reshape(batch[0]["movie_id"], [-1]))),
            total[1] + tf.reduce_sum(tf.cumsum(tf.reshape(batch[1], [-1])))))  # fmt: skip

    ratings = tf.data.Dataset.from_tensor_slices(small_ratings).batch(700)
    for list_size in (4, None):
        eager = checksums(ratings, list_size)
        in_graph = tf.function(lambda: checksums(ratings, list_size), autograph=False)()
        assert int(eager[0]) > 0
        assert int(in_graph[0]) == int(eager[0]) and float(in_graph[1]) == pytest.approx(float(eager[1]))


def test_no_ratings_give_no_lists():
    empty = tf.data.Dataset.from_tensor_slices(
        {"user_id": np.zeros(0, np.int64), "movie_id": np.zeros(0, np.int64), "user_rating": np.zeros(0, np.float32)}
    )
    assert list(sample_lists(empty)) == []


# --- batch_lists


def _variable_lists() -> tf.data.Dataset:
    def gen():
        for user, n in ((1, 3), (2, 1), (3, 2)):
            features = {"user_id": np.int64(user), "movie_id": np.arange(n, dtype=np.int64) + 10}
            yield features, np.full(n, 0.5, np.float32)

    spec = ({"user_id": tf.TensorSpec([], tf.int64), "movie_id": tf.TensorSpec([None], tf.int64)},
            tf.TensorSpec([None], tf.float32))  # fmt: skip
    return tf.data.Dataset.from_generator(gen, output_signature=spec)


def test_padded_batches_pad_to_the_longest_list_with_padding_id_and_label():
    features, labels = next(iter(batch_lists(_variable_lists(), 2)))
    np.testing.assert_array_equal(features["movie_id"], [[10, 11, 12], [10, PADDING_ID, PADDING_ID]])
    np.testing.assert_array_equal(labels, [[0.5, 0.5, 0.5], [0.5, PADDING_LABEL, PADDING_LABEL]])
    np.testing.assert_array_equal(features["user_id"], [1, 2])


def test_padded_batches_pad_to_a_fixed_size_and_reject_longer_lists():
    features, labels = next(iter(batch_lists(_variable_lists().skip(1), 2, pad_to=4)))
    np.testing.assert_array_equal(labels, [[0.5, -1, -1, -1], [0.5, 0.5, -1, -1]])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"longer than pad_to=2"):
        list(batch_lists(_variable_lists(), 2, pad_to=2))


def test_ragged_batches_and_drop_remainder():
    batches = list(batch_lists(_variable_lists(), 2, ragged=True, drop_remainder=True))
    assert len(batches) == 1
    features, labels = batches[0]
    assert isinstance(labels, tf.RaggedTensor)
    assert labels.row_lengths().numpy().tolist() == [3, 1]


def test_fixed_size_lists_batch_as_dense_tensors(small_ratings):
    lists = sample_lists(tf.data.Dataset.from_tensor_slices(small_ratings), 3, 2, 3, seed=1)
    features, labels = next(iter(batch_lists(lists, 16)))
    assert features["movie_id"].shape == (16, 3) and labels.shape == (16, 3)
    same, same_labels = next(iter(sample_lists(tf.data.Dataset.from_tensor_slices(small_ratings), 3, 2, 3, seed=1,
                                               batch_size=16)))  # fmt: skip
    np.testing.assert_array_equal(features["movie_id"], same["movie_id"])
    np.testing.assert_array_equal(labels, same_labels)


# --- from_memory


def test_from_memory_batches_rows_and_keeps_the_remainder():
    tensors = ({"user_id": tf.range(10, dtype=tf.int64), "movie_id": tf.reshape(tf.range(30), [10, 3])},
               tf.reshape(tf.range(30, dtype=tf.float32), [10, 3]))  # fmt: skip
    batches = list(from_memory(tensors, batch_size=4))
    assert [int(labels.shape[0]) for _, labels in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([f["movie_id"] for f, _ in batches]), tensors[0]["movie_id"])
    rows = list(from_memory(tensors))
    assert len(rows) == 10 and rows[7][0]["user_id"].numpy() == 7
    np.testing.assert_array_equal(rows[7][1], [21.0, 22.0, 23.0])


def test_from_memory_slices_ragged_rows_into_plain_tensors():
    labels = tf.ragged.constant([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0]])
    rows = list(from_memory(labels))
    assert isinstance(rows[2], tf.Tensor) and rows[2].numpy().tolist() == [4.0, 5.0, 6.0]
    batches = list(from_memory(labels, batch_size=2))
    assert isinstance(batches[0], tf.RaggedTensor)
    assert [b.row_lengths().numpy().tolist() for b in batches] == [[2, 1], [3]]


@pytest.mark.parametrize("batch_size", [None, 4], ids=["rows", "batches"])
def test_from_memory_turns_off_rewrites_and_autotuning(batch_size):
    # Rewrites copied the tensors per iterator; autotuning stalled iterator teardown (BUILD.md has the numbers).
    options = from_memory(tf.range(10), batch_size=batch_size).options()
    assert options.experimental_optimization.apply_default_optimizations is False
    assert options.autotune.enabled is False
    assert tf.data.Dataset.range(10).options().autotune.enabled is not False  # tf.data's default differs


def test_batch_lists_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"batch_size=0: must be >= 1"):
        batch_lists(_variable_lists(), 0)
    with pytest.raises(ValueError, match=r"pad_to=3: must be >= 1 and only with ragged=False"):
        batch_lists(_variable_lists(), 2, ragged=True, pad_to=3)


def test_from_memory_rejects_batch_size_below_one():
    with pytest.raises(ValueError, match=r"batch_size=0: must be >= 1"):
        from_memory(tf.range(3), batch_size=0)


def test_from_memory_batch_larger_than_the_rows_gives_one_batch():
    batches = list(from_memory({"a": tf.reshape(tf.range(50.0), [10, 5])}, 2**31 - 1))
    assert len(batches) == 1
    np.testing.assert_array_equal(batches[0]["a"], np.arange(50.0).reshape(10, 5))
    assert list(from_memory(tf.zeros([0, 3]), 2**31 - 1)) == []


# --- Under op determinism (training turns it on), in subprocesses: a crash there must fail the test, not the run.

_UNDER_DETERMINISM = """
import sys
import numpy as np
import tensorflow as tf
from tfrank.data import from_memory, sample_lists, split, synthetic

tf.config.experimental.enable_op_determinism()
batches = list(from_memory({"a": tf.zeros([10, 5])}, 2**31 - 1))  # this crashed TensorFlow (exit 139)
assert len(batches) == 1 and batches[0]["a"].shape == (10, 5), batches
ratings = synthetic.generate_ratings(num_users=80, num_movies=400, num_ratings=2400, seed=3, min_ratings_per_user=3)
results = {}
for form, dataset in (("elements", tf.data.Dataset.from_tensor_slices(ratings)),
                      ("batches", tf.data.Dataset.from_tensor_slices(ratings).batch(700))):
    train, test = split(dataset, (0.6, 0.4), seed=5)
    for name, lists in (("train", sample_lists(train, 4, 3, 4, seed=9, batch_size=1 << 20)),
                        ("test", sample_lists(test, None, min_list_size=4, batch_size=1 << 20))):
        features, labels = next(iter(lists))
        results[f"{form}_{name}_movie_id"] = features["movie_id"].numpy() if name == "train" else (
            features["movie_id"].flat_values.numpy())
        results[f"{form}_{name}_labels"] = labels.numpy() if name == "train" else labels.flat_values.numpy()
np.savez(sys.argv[1], **results)
"""


def test_from_memory_split_and_sample_lists_under_op_determinism_match_a_run_without(small_ratings, tmp_path):
    script = tmp_path / "under_determinism.py"
    script.write_text(_UNDER_DETERMINISM)
    output = tmp_path / "lists.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, str(script), str(output)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    deterministic = np.load(output)
    train, test = split(tf.data.Dataset.from_tensor_slices(small_ratings), (0.6, 0.4), seed=5)
    _, train_movies, train_labels = _lists(sample_lists(train, 4, 3, 4, seed=9))
    test_features, test_labels = next(iter(sample_lists(test, None, min_list_size=4, batch_size=1 << 20)))
    assert train_movies.shape[1] == 4 and len(train_movies) > 100
    for form in ("elements", "batches"):
        np.testing.assert_array_equal(deterministic[f"{form}_train_movie_id"], train_movies)
        np.testing.assert_array_equal(deterministic[f"{form}_train_labels"], train_labels)
        np.testing.assert_array_equal(deterministic[f"{form}_test_movie_id"], test_features["movie_id"].flat_values)
        np.testing.assert_array_equal(deterministic[f"{form}_test_labels"], test_labels.flat_values)


# --- Repeated (user, movie) ratings: one per pair, the latest.

# User 1 rates movie 10 three times (the latest by timestamp is in the middle line) and movie 30 twice at the same
# time (the later line wins); user 2 rates movie 10 once.
_U_DATA_WITH_REPEATS = (
    b"1\t10\t1\t100\n1\t20\t3\t150\n1\t10\t5\t300\n1\t30\t2\t400\n2\t10\t4\t100\n1\t10\t2\t200\n1\t30\t4\t400\n"
    b"2\t20\t3\t100\n2\t30\t3\t100\n"
)


def _full_lists(lists: tf.data.Dataset) -> dict[int, dict[int, float]]:
    """{user_id: {movie_id: label}} of full lists, failing when a list repeats a movie."""
    by_user = {}
    for features, labels in lists.as_numpy_iterator():
        movies = features["movie_id"].tolist()
        assert len(set(movies)) == len(movies), f"user {features['user_id']} list repeats a movie: {movies}"
        by_user[int(features["user_id"])] = dict(zip(movies, labels.tolist()))
    return by_user


def test_repeated_movie_counts_once_with_its_latest_rating(tmp_path):
    (tmp_path / "u.data").write_bytes(_U_DATA_WITH_REPEATS)
    for batch_size in (None, 4):
        ratings = load_ratings("100k", source=tmp_path, batch_size=batch_size)
        lists = _full_lists(sample_lists(ratings, list_size=None, min_list_size=3))
        assert lists == {1: {20: 0.5, 10: 1.0, 30: 0.75}, 2: {10: 0.75, 20: 0.5, 30: 0.5}}


def test_repeated_movie_without_timestamps_keeps_the_later_rating():
    ratings = tf.data.Dataset.from_tensor_slices(
        {"user_id": [7, 7, 7, 7], "movie_id": [5, 6, 5, 8], "user_rating": [5.0, 1.0, 3.0, 2.0]}
    )
    assert _full_lists(sample_lists(ratings, list_size=None, min_list_size=1)) == {7: {6: 0.0, 5: 0.5, 8: 0.25}}


def test_sampled_lists_never_repeat_a_movie_and_count_distinct_movies_for_min_list_size(tmp_path):
    (tmp_path / "u.data").write_bytes(_U_DATA_WITH_REPEATS)
    ratings = load_ratings("100k", source=tmp_path)
    users, movies, labels = _lists(sample_lists(ratings, list_size=3, num_lists_per_user=20, min_list_size=3))
    assert sorted(set(users.tolist())) == [1, 2]
    assert all(sorted(row) == [10, 20, 30] for row in movies.tolist())
    latest = {(1, 10): 1.0, (1, 20): 0.5, (1, 30): 0.75, (2, 10): 0.75, (2, 20): 0.5, (2, 30): 0.5}
    for user, row, row_labels in zip(users, movies, labels):
        assert [latest[(int(user), int(m))] for m in row] == row_labels.tolist()
    # User 1 has 6 ratings but 3 distinct movies: too few for min_list_size=4.
    assert list(sample_lists(ratings, list_size=None, min_list_size=4)) == []


def test_repeated_movies_are_resolved_the_same_inside_a_tf_function(tmp_path):
    (tmp_path / "u.data").write_bytes(_U_DATA_WITH_REPEATS)
    ratings = load_ratings("100k", source=tmp_path, batch_size=5)

    def full_lists():
        features, labels = sample_lists(ratings, list_size=None, min_list_size=3, batch_size=8).get_single_element()
        return features["movie_id"].flat_values, labels.flat_values

    in_graph = tf.function(full_lists, autograph=False)()
    eager = full_lists()
    np.testing.assert_array_equal(in_graph[0], [20, 10, 30, 10, 20, 30])
    np.testing.assert_array_equal(in_graph[1], [0.5, 1.0, 0.75, 0.75, 0.5, 0.5])
    for a, b in zip(in_graph, eager):
        np.testing.assert_array_equal(a, b)


def test_split_sends_every_rating_of_a_repeated_pair_to_the_same_part(tmp_path):
    (tmp_path / "u.data").write_bytes(_U_DATA_WITH_REPEATS * 3)
    parts = [_ratings_columns(part) for part in split(load_ratings("100k", source=tmp_path), (0.5, 0.5), seed=1)]
    pairs = [set(zip(p["user_id"].tolist(), p["movie_id"].tolist())) if p else set() for p in parts]
    assert not pairs[0] & pairs[1]
    assert sum(len(p["user_id"]) for p in parts if p) == 27


# --- Plain calls (one rating or list per element) read whole columns, not elements.


def test_plain_calls_give_the_same_lists_as_batched_calls_and_as_any_per_element_dataset(movielens_dir):
    def tutorial_lists(ratings: tf.data.Dataset, batched: bool) -> list[np.ndarray]:
        train, validation, _ = split(ratings, (0.7, 0.15, 0.15), seed=42)
        if batched:
            parts = [sample_lists(part, 5, n, seed=42, batch_size=4096) for part, n in ((train, 50), (validation, 1))]
        else:
            parts = [batch_lists(sample_lists(part, 5, n, seed=42), 4096) for part, n in ((train, 50), (validation, 1))]
        return [array for part in parts for array in _lists(part)]

    plain_calls = tutorial_lists(load_ratings("100k", source=movielens_dir), batched=False)
    batched_calls = tutorial_lists(load_ratings("100k", source=movielens_dir, batch_size=65536), batched=True)
    # A map makes a new dataset that carries no faster form: read element by element, it must agree.
    elements = load_ratings("100k", source=movielens_dir).map(lambda rating: rating)
    element_by_element = tutorial_lists(elements, batched=False)
    assert len(plain_calls[0]) == 943 * 50
    for a, b, c in zip(plain_calls, batched_calls, element_by_element):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_per_element_datasets_of_load_ratings_split_and_sample_lists_are_read_as_columns(tmp_path, small_ratings):
    # Elements and their marked batched form disagree here on purpose: what comes out shows which one was read.
    elements = tf.data.Dataset.from_tensor_slices({key: value[:10] for key, value in small_ratings.items()})
    batches = tf.data.Dataset.from_tensor_slices(small_ratings).batch(500)
    marked = _tfdata.with_batched_form(elements, batches)
    assert len(_ratings_columns(split(marked, (0.5, 0.5), seed=1)[0])["user_id"]) > 100
    (tmp_path / "u.data").write_bytes(b"1\t10\t4\t881250949\n")
    assert _tfdata.batched_form(load_ratings("100k", source=tmp_path)) is not None
    part = split(tf.data.Dataset.from_tensor_slices(small_ratings), (0.5, 0.5), seed=1)[0]
    assert set(_tfdata.rows_in_memory(part)) == set(small_ratings)
    lists = sample_lists(part, 3, 2, 3, seed=1)
    assert _tfdata.rows_in_memory(lists) is not None


def test_batch_lists_of_sampled_lists_equals_batching_them_one_by_one(small_ratings):
    lists = sample_lists(tf.data.Dataset.from_tensor_slices(small_ratings), 3, 2, 3, seed=1)
    one_by_one = lists.map(lambda features, labels: (features, labels))  # unmarked: batched element by element
    for drop_remainder in (False, True):
        fast = list(batch_lists(lists, 50, drop_remainder=drop_remainder).as_numpy_iterator())
        slow = list(batch_lists(one_by_one, 50, drop_remainder=drop_remainder).as_numpy_iterator())
        assert len(fast) == len(slow) >= 3
        assert [len(labels) for _, labels in fast] == [len(labels) for _, labels in slow]
        for (fast_features, fast_labels), (slow_features, slow_labels) in zip(fast, slow):
            np.testing.assert_array_equal(fast_features["movie_id"], slow_features["movie_id"])
            np.testing.assert_array_equal(fast_features["user_id"], slow_features["user_id"])
            np.testing.assert_array_equal(fast_labels, slow_labels)


def test_plain_calls_inside_a_tf_function_equal_the_eager_ones(tmp_path, small_ratings):
    lines = [f"{u}\t{m}\t{int(r)}\t{t}" for u, m, r, t in zip(*(small_ratings[k] for k in
             ("user_id", "movie_id", "user_rating", "timestamp")))]  # fmt: skip
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")

    def checksums():
        train, _ = split(load_ratings("100k", source=tmp_path), (0.6, 0.4), seed=5)
        lists = batch_lists(sample_lists(train, 4, num_lists_per_user=3, min_list_size=4, seed=9), 50)
        return lists.reduce((tf.constant(0, tf.int64), tf.constant(0.0)), lambda total, batch: (
            total[0] + tf.reduce_sum(tf.cumsum(tf.reshape(batch[0]["movie_id"], [-1]))),
            total[1] + tf.reduce_sum(tf.cumsum(tf.reshape(batch[1], [-1])))))  # fmt: skip

    eager = checksums()
    in_graph = tf.function(checksums, autograph=False)()
    assert int(eager[0]) > 0
    assert int(in_graph[0]) == int(eager[0]) and float(in_graph[1]) == pytest.approx(float(eager[1]))


def test_repeated_pairs_of_ids_too_large_to_combine_keep_the_latest_rating():
    huge = 2**62
    ratings = tf.data.Dataset.from_tensor_slices({
        "user_id": np.array([huge, huge, huge, 3], np.int64), "movie_id": np.array([huge, 1, huge, huge], np.int64),
        "user_rating": np.array([1.0, 2.0, 5.0, 4.0], np.float32), "timestamp": np.array([9, 1, 3, 1], np.int64),
    })  # fmt: skip
    lists = _full_lists(sample_lists(ratings, list_size=None, min_list_size=1))
    assert lists == {huge: {1: 0.25, huge: 0.0}, 3: {huge: 0.75}}

    def flat_lists():
        features, labels = sample_lists(ratings, list_size=None, min_list_size=1, batch_size=8).get_single_element()
        return features["movie_id"].flat_values, labels.flat_values

    movies, labels = tf.function(flat_lists, autograph=False)()
    np.testing.assert_array_equal(movies, [huge, huge, 1])
    np.testing.assert_array_equal(labels, [0.75, 0.0, 0.25])
