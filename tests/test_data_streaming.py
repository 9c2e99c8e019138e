"""Tests for tfrank.data.streaming: lists and splits built entirely in tf.data, and their tf.data service run."""

import threading

import numpy as np
import pytest
import tensorflow as tf

from tfrank.data import (
    load_ratings,
    sample_lists,
    split,
    stream_lists,
    stream_lists_sharded,
    stream_ratings,
    stream_split,
    streaming,
    synthetic,
)
from tfrank.data.streaming import _whole_users_in_order

# Generous: the service job takes seconds; the bound only keeps a broken service from hanging the test run.
_SERVICE_TIMEOUT_S = 300


def _lists(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_id [L], movie_id [L, k], labels [L, k]) of fixed-size lists, from elements or batches, in order."""
    if dataset.element_spec[1].shape.rank == 1:
        dataset = dataset.batch(1 << 16)
    users, movies, labels = [], [], []
    for features, batch_labels in dataset.as_numpy_iterator():
        users.append(features["user_id"]), movies.append(features["movie_id"]), labels.append(batch_labels)
    return np.concatenate(users), np.concatenate(movies), np.concatenate(labels)


def _lists_per_user(lists: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[int, list[tuple[bytes, bytes]]]:
    """Each user's lists as a sorted list of (movie_id bytes, labels bytes): the multiset, order across users gone."""
    per_user: dict[int, list[tuple[bytes, bytes]]] = {}
    for user, movies, labels in zip(*lists):
        per_user.setdefault(int(user), []).append((movies.tobytes(), labels.tobytes()))
    return {user: sorted(user_lists) for user, user_lists in per_user.items()}


def _full_lists(dataset: tf.data.Dataset) -> dict[int, tuple[bytes, bytes]]:
    return {int(features["user_id"]): (features["movie_id"].tobytes(), labels.tobytes())
            for features, labels in dataset.as_numpy_iterator()}  # fmt: skip


@pytest.fixture(scope="module")
def sorted_ratings() -> dict[str, np.ndarray]:
    """Synthetic ratings sorted by user (as ml-25m), some users below 10 ratings, with repeated (user, movie) pairs
    whose latest rating is sometimes the earlier line, including pairs that straddle batches of 97."""
    columns = synthetic.generate_ratings(num_users=60, num_movies=300, num_ratings=2400, seed=5, min_ratings_per_user=3)
    rng = np.random.default_rng(0)
    repeats = rng.choice(len(columns["user_id"]), size=200, replace=False)
    columns = {key: np.concatenate([values, values[repeats]]) for key, values in columns.items()}
    size = len(columns["user_id"])
    columns["user_rating"][-200:] = rng.integers(1, 6, size=200).astype(columns["user_rating"].dtype)
    columns["timestamp"][-200:] += rng.integers(-1000, 1000, size=200)
    order = np.argsort(columns["user_id"], kind="stable")
    assert size == 2600
    return {key: values[order] for key, values in columns.items()}


@pytest.fixture(scope="module")
def ml100k_ratings(movielens_dir) -> tf.data.Dataset:
    return load_ratings("100k", source=movielens_dir, batch_size=8192)


# --- stream_ratings


def _columns(batches: tf.data.Dataset) -> dict[str, np.ndarray]:
    rows = list(batches.as_numpy_iterator())
    return {key: np.concatenate([batch[key] for batch in rows]) for key in rows[0]}


def test_streamed_ratings_of_ml100k_equal_load_ratings(movielens_dir, ml100k_ratings):
    streamed, expected = _columns(stream_ratings("100k", movielens_dir)), _columns(ml100k_ratings)
    assert len(streamed["user_id"]) == 100_000
    assert streamed.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(streamed[key], expected[key])


def test_streamed_ratings_of_a_csv_with_header_equal_load_ratings(tmp_path):
    synthetic.write_movielens_csv(tmp_path, num_users=40, num_movies=200, num_ratings=3000, seed=1)
    streamed = _columns(stream_ratings("25m", tmp_path))
    expected = _columns(load_ratings("25m", tmp_path, batch_size=1000))
    assert len(streamed["user_id"]) == 3000
    for key in expected:
        np.testing.assert_array_equal(streamed[key], expected[key])


@pytest.mark.parametrize("final_newline", [True, False], ids=["newline_at_end", "no_newline_at_end"])
def test_streamed_ratings_read_in_blocks_shorter_than_a_line_equal_load_ratings(tmp_path, monkeypatch,
                                                                                final_newline):  # fmt: skip
    synthetic.write_movielens_csv(tmp_path, num_users=10, num_movies=100, num_ratings=200, seed=2)
    if not final_newline:
        text = (tmp_path / "ratings.csv").read_bytes()
        (tmp_path / "ratings.csv").write_bytes(text.rstrip(b"\n"))
    monkeypatch.setattr(streaming, "_BLOCK_BYTES", 7)  # lines straddle blocks, and some blocks hold no newline
    streamed = _columns(stream_ratings("25m", tmp_path))
    expected = _columns(load_ratings("25m", tmp_path, batch_size=64))
    assert len(streamed["user_id"]) == 200
    for key in expected:
        np.testing.assert_array_equal(streamed[key], expected[key])


def test_streamed_ratings_name_the_file_and_line_of_a_malformed_line_past_the_first_batch(tmp_path):
    synthetic.write_movielens_csv(tmp_path, num_users=300, num_movies=2000, num_ratings=70_000, seed=1)
    lines = (tmp_path / "ratings.csv").read_text().splitlines(keepends=True)
    lines[68_000 - 1] = "1,3,x,6\n"  # line 68,000 as an editor numbers them, the header being line 1
    (tmp_path / "ratings.csv").write_text("".join(lines))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"ratings.csv: line 68000 is 1,3,x,6; expected userId"):
        _columns(stream_ratings("25m", tmp_path))


def test_stream_ratings_rejects_tfds():
    with pytest.raises(ValueError, match="source='tfds': stream_ratings reads local GroupLens files"):
        stream_ratings("25m", "tfds")


# --- stream_lists


def test_streamed_lists_of_unsorted_ml100k_equal_sample_lists_per_user(ml100k_ratings):
    expected = _lists_per_user(_lists(sample_lists(ml100k_ratings, seed=3, batch_size=4096)))
    streamed = _lists_per_user(_lists(stream_lists(ml100k_ratings, seed=3)))
    assert len(expected) == 943
    assert streamed == expected


def test_streamed_lists_of_sorted_ml100k_equal_sample_lists_in_order(ml100k_ratings):
    columns = next(ml100k_ratings.rebatch(1 << 20).as_numpy_iterator())
    order = np.argsort(columns["user_id"], kind="stable")
    by_user = tf.data.Dataset.from_tensor_slices({key: values[order] for key, values in columns.items()}).batch(5000)
    expected = _lists(sample_lists(ml100k_ratings, seed=3, batch_size=4096))
    streamed = _lists(stream_lists(by_user, seed=3, sorted_by_user=True, batch_size=1000))
    for streamed_column, expected_column in zip(streamed, expected):
        np.testing.assert_array_equal(streamed_column, expected_column)


@pytest.mark.parametrize("batch", [None, 97], ids=["elements", "batches"])
@pytest.mark.parametrize("sorted_by_user", [True, False], ids=["sorted", "window"])
def test_repeated_pairs_and_small_users_give_the_lists_of_sample_lists(sorted_ratings, batch, sorted_by_user):
    ratings = tf.data.Dataset.from_tensor_slices(sorted_ratings)
    ratings = ratings if batch is None else ratings.batch(batch)
    expected = _lists(sample_lists(ratings, list_size=4, num_lists_per_user=7, min_list_size=10, seed=11))
    streamed = _lists(stream_lists(ratings, list_size=4, num_lists_per_user=7, min_list_size=10, seed=11,
                                   sorted_by_user=sorted_by_user))  # fmt: skip
    assert 0 < len(set(expected[0].tolist())) < 60  # some users were dropped, some kept
    assert _lists_per_user(streamed) == _lists_per_user(expected)
    if sorted_by_user:
        for streamed_column, expected_column in zip(streamed, expected):
            np.testing.assert_array_equal(streamed_column, expected_column)


@pytest.mark.parametrize("sorted_by_user", [True, False], ids=["sorted", "window"])
def test_streamed_full_lists_equal_sample_lists_full_lists(sorted_ratings, sorted_by_user):
    ratings = tf.data.Dataset.from_tensor_slices(sorted_ratings).batch(97)
    expected = _full_lists(sample_lists(ratings, list_size=None, min_list_size=3))
    streamed = _full_lists(stream_lists(ratings, list_size=None, min_list_size=3, sorted_by_user=sorted_by_user))
    assert len(expected) == 60
    assert streamed == expected


def test_streamed_full_lists_in_batches_are_ragged_like_sample_lists(sorted_ratings):
    ratings = tf.data.Dataset.from_tensor_slices(sorted_ratings).batch(97)
    expected = sample_lists(ratings, list_size=None, min_list_size=3, batch_size=16)
    streamed = stream_lists(ratings, list_size=None, min_list_size=3, sorted_by_user=True, batch_size=16)
    assert streamed.element_spec == expected.element_spec
    for (features, labels), (expected_features, expected_labels) in zip(streamed, expected, strict=True):
        assert features["movie_id"].to_list() == expected_features["movie_id"].to_list()
        assert labels.to_list() == expected_labels.to_list()


def test_stream_lists_reads_nothing_until_iterated():
    def unreadable(index: tf.Tensor) -> dict[str, tf.Tensor]:
        check = tf.debugging.Assert(False, ["ratings were read"])
        with tf.control_dependencies([check]):
            return {"user_id": index, "movie_id": index, "user_rating": tf.cast(index, tf.float32)}

    ratings = tf.data.Dataset.range(10).map(unreadable)
    lists = stream_lists(ratings, sorted_by_user=True)  # would raise if it read the ratings
    with pytest.raises(tf.errors.InvalidArgumentError, match="ratings were read"):
        next(iter(lists))


def test_unsorted_ratings_with_sorted_by_user_stop_with_the_user_ids_out_of_order():
    ratings = tf.data.Dataset.from_tensor_slices(
        {"user_id": [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1], "movie_id": list(range(11)), "user_rating": [4.0] * 11}
    ).batch(4)
    message = "not sorted by user: user_id 1 comes after user_id 2; pass sorted_by_user=False"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _lists(stream_lists(ratings, sorted_by_user=True))


def test_sorted_chunks_hold_whole_users_and_at_most_a_batch_plus_the_largest_user(sorted_ratings):
    keys = ("user_id", "movie_id", "user_rating")
    ratings = tf.data.Dataset.from_tensor_slices({key: sorted_ratings[key] for key in keys}).batch(97)
    chunks = [chunk["user_id"] for chunk in _whole_users_in_order(ratings, keys).as_numpy_iterator()]
    largest_user = np.bincount(sorted_ratings["user_id"]).max()
    users_per_chunk = [set(chunk.tolist()) for chunk in chunks]
    assert max(len(chunk) for chunk in chunks) <= 97 + largest_user
    assert sum(len(users) for users in users_per_chunk) == len(set(sorted_ratings["user_id"].tolist())) == 60
    np.testing.assert_array_equal(np.concatenate(chunks), sorted_ratings["user_id"])


def test_no_ratings_give_no_streamed_lists():
    ratings = tf.data.Dataset.from_tensor_slices(
        {"user_id": tf.zeros([0], tf.int64), "movie_id": tf.zeros([0], tf.int64), "user_rating": tf.zeros([0])}
    )
    assert list(stream_lists(ratings, sorted_by_user=True)) == []
    assert list(stream_lists(ratings.batch(8), sorted_by_user=False, batch_size=4)) == []


def test_streamed_lists_built_inside_a_tf_function_equal_the_eager_ones(sorted_ratings):
    ratings = tf.data.Dataset.from_tensor_slices(sorted_ratings).batch(97)
    expected = _lists(stream_lists(ratings, list_size=3, num_lists_per_user=4, seed=2, sorted_by_user=True))

    @tf.function
    def all_lists(sorted_by_user: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        lists = stream_lists(ratings, list_size=3, num_lists_per_user=4, seed=2, sorted_by_user=sorted_by_user)
        features, labels = lists.batch(1 << 20).get_single_element()
        return features["user_id"], features["movie_id"], labels

    for sorted_by_user in (True, False):
        in_graph = tuple(t.numpy() for t in all_lists(sorted_by_user))
        assert _lists_per_user(in_graph) == _lists_per_user(expected)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"list_size": 0}, "list_size=0: must be >= 1"),
    ({"list_size": 5, "min_list_size": 3}, "min_list_size=3 < list_size=5"),
    ({"batch_size": 0}, "batch_size=0: must be >= 1"),
])  # fmt: skip
def test_stream_lists_rejects_bad_arguments(kwargs, message):
    ratings = tf.data.Dataset.from_tensor_slices({"user_id": [1], "movie_id": [1], "user_rating": [1.0]})
    with pytest.raises(ValueError, match=message):
        stream_lists(ratings, **kwargs)


def test_stream_lists_sharded_rejects_fewer_than_one_shard():
    ratings = tf.data.Dataset.from_tensor_slices({"user_id": [1], "movie_id": [1], "user_rating": [1.0]})
    with pytest.raises(ValueError, match="num_shards=0: must be >= 1"):
        stream_lists_sharded(ratings, 0)


def test_sharded_lists_without_a_service_equal_sample_lists_per_user(sorted_ratings):
    ratings = tf.data.Dataset.from_tensor_slices(sorted_ratings).batch(97)
    expected = _lists(sample_lists(ratings, list_size=4, num_lists_per_user=3, seed=1))
    sharded = _lists(stream_lists_sharded(ratings, 3, list_size=4, num_lists_per_user=3, seed=1,
                                          sorted_by_user=True, batch_size=50))  # fmt: skip
    assert _lists_per_user(sharded) == _lists_per_user(expected)


@pytest.mark.parametrize("sorted_by_user", [True, False], ids=["sorted", "group_by_window"])
def test_each_shards_lists_are_those_of_its_users_in_the_sharded_stream(sorted_ratings, sorted_by_user):
    ratings = tf.data.Dataset.from_tensor_slices(sorted_ratings).batch(97)
    kwargs = dict(list_size=4, num_lists_per_user=3, seed=1, sorted_by_user=sorted_by_user, batch_size=50)
    shards = [_lists(streaming.stream_lists_of_shard(ratings, 3, shard, **kwargs)) for shard in range(3)]
    for shard, lists in enumerate(shards):
        assert lists[0].size > 0 and set(streaming.user_shards(lists[0], 3).numpy()) == {shard}
    together = tuple(np.concatenate(column) for column in zip(*shards))
    sharded = _lists(stream_lists_sharded(ratings, 3, **kwargs))
    assert _lists_per_user(together) == _lists_per_user(sharded)
    assert together[0].size == sharded[0].size == 3 * len(np.unique(sharded[0]))  # every user once, 3 lists each


def test_one_shard_is_the_whole_stream(sorted_ratings):
    ratings = tf.data.Dataset.from_tensor_slices(sorted_ratings).batch(97)
    whole = _lists(streaming.stream_lists_of_shard(ratings, 1, 0, list_size=4, seed=1, sorted_by_user=True))
    expected = _lists(stream_lists(ratings, list_size=4, seed=1, sorted_by_user=True))
    for got, want in zip(whole, expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shard", [-1, 3])
def test_stream_lists_of_shard_rejects_a_shard_outside_the_shards(sorted_ratings, shard):
    ratings = tf.data.Dataset.from_tensor_slices(sorted_ratings)
    with pytest.raises(ValueError, match=f"shard={shard} of num_shards=3: need num_shards >= 1 and 0 <= shard < "
                                         "num_shards"):
        streaming.stream_lists_of_shard(ratings, 3, shard)


def test_user_shards_spread_users_over_every_shard_by_a_hash_not_by_id_ranges():
    shards = streaming.user_shards(np.arange(1, 10_001), 4).numpy()
    assert shards.dtype == np.int64 and set(shards) == {0, 1, 2, 3}
    assert all(2300 < np.sum(shards == shard) < 2700 for shard in range(4))
    assert len(set(shards[:8])) > 1  # neighbouring ids land in different shards


@pytest.mark.parametrize("batch", [None, 13], ids=["elements", "batches"])
def test_stream_vocabularies_are_the_sorted_distinct_ids(sorted_ratings, monkeypatch, batch):
    monkeypatch.setattr(streaming, "ROWS_PER_BATCH", 64)  # merges several times
    ratings = tf.data.Dataset.from_tensor_slices(sorted_ratings)
    ratings = ratings if batch is None else ratings.batch(batch)
    users, movies = streaming.stream_vocabularies(ratings)
    np.testing.assert_array_equal(users, np.unique(sorted_ratings["user_id"]))
    np.testing.assert_array_equal(movies, np.unique(sorted_ratings["movie_id"]))
    assert movies.size > 200


def test_streamed_movielens_ratings_say_whether_they_are_sorted_by_user(movielens_dir, synthetic_dir,
                                                                         ml100k_ratings):
    ratings, sorted_by_user = streaming.stream_movielens_ratings("100k", movielens_dir)
    assert sorted_by_user is False
    np.testing.assert_array_equal(_columns(ratings)["movie_id"], _columns(ml100k_ratings)["movie_id"])
    ratings, sorted_by_user = streaming.stream_movielens_ratings("25m", synthetic_dir)
    users = _columns(ratings)["user_id"]
    assert sorted_by_user is True and users.size == 12_000 and np.all(np.diff(users) >= 0)


# --- stream_split


@pytest.mark.parametrize("batch", [None, 97], ids=["elements", "batches"])
def test_stream_split_gives_the_parts_of_split_in_input_order(sorted_ratings, batch):
    ratings = tf.data.Dataset.from_tensor_slices(sorted_ratings)
    ratings = ratings if batch is None else ratings.batch(batch)
    expected, streamed = split(ratings, (0.6, 0.3, 0.1), seed=9), stream_split(ratings, (0.6, 0.3, 0.1), seed=9)
    sizes = []
    for streamed_part, expected_part in zip(streamed, expected, strict=True):
        assert all(spec.is_compatible_with(expected_part.element_spec[key])
                   for key, spec in streamed_part.element_spec.items())  # fmt: skip
        streamed_part, expected_part = (part.unbatch() if batch else part for part in (streamed_part, expected_part))
        streamed_rows, expected_rows = (list(part.batch(1 << 16).as_numpy_iterator())[0]
                                        for part in (streamed_part, expected_part))  # fmt: skip
        for key in sorted_ratings:
            np.testing.assert_array_equal(streamed_rows[key], expected_rows[key])
        sizes.append(len(streamed_rows["user_id"]))
    assert sum(sizes) == 2600 and min(sizes) > 100


def test_lists_of_a_streamed_split_equal_those_of_the_in_memory_split(ml100k_ratings):
    expected = _lists(sample_lists(split(ml100k_ratings, seed=42)[0], seed=42, batch_size=4096))
    streamed = _lists(stream_lists(stream_split(ml100k_ratings, seed=42)[0], seed=42, batch_size=4096))
    assert 900 < len(set(expected[0].tolist())) <= 943
    assert _lists_per_user(streamed) == _lists_per_user(expected)


def test_stream_split_rejects_fractions_that_do_not_sum_to_one(sorted_ratings):
    with pytest.raises(ValueError, match=r"fractions=\(0.7, 0.2\): must be positive and sum to 1"):
        stream_split(tf.data.Dataset.from_tensor_slices(sorted_ratings), (0.7, 0.2))


# --- tf.data service


@pytest.mark.parametrize("reader", ["load_ratings", "stream_ratings"])
def test_tf_data_service_with_two_workers_gives_the_lists_of_sample_lists(movielens_dir, ml100k_ratings, reader):
    ratings = ml100k_ratings if reader == "load_ratings" else stream_ratings("100k", movielens_dir)
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    workers = [
        service.WorkerServer(service.WorkerConfig(dispatcher_address=address, worker_address="127.0.0.1:%port%",
                                                  port=0))  # fmt: skip
        for _ in range(2)
    ]
    # Dynamic sharding hands each element of the leading range (a shard of users) to one worker, so each user's
    # ratings are grouped on one worker; a user split across workers would get lists from partial ratings.
    lists = stream_lists_sharded(ratings, 4, seed=3, batch_size=1000).apply(
        service.distribute(processing_mode=service.ShardingPolicy.DYNAMIC, service=dispatcher.target)
    )
    received: list = []
    # A daemon thread bounds the wait: a service that stops answering fails the test instead of hanging the run.
    reader = threading.Thread(target=lambda: received.append(_lists(lists)), daemon=True)
    try:
        reader.start()
        reader.join(timeout=_SERVICE_TIMEOUT_S)
        assert received, f"tf.data service gave no complete result within {_SERVICE_TIMEOUT_S} s"
        distributed = _lists_per_user(received[0])
    finally:
        for worker in workers:
            worker.stop()
        dispatcher.stop()
    expected = _lists_per_user(_lists(sample_lists(ml100k_ratings, seed=3, batch_size=4096)))
    assert len(expected) == 943
    assert distributed == expected
