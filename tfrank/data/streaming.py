"""Ratings -> ranking lists built entirely from tf.data transformations, for input too large to hold in memory and
for tf.data service.

:func:`stream_lists` gives each user the same lists as :func:`tfrank.data.sample_lists` (same seed, byte for byte;
it calls the same sampler), and :func:`stream_split` the same parts as :func:`tfrank.data.split`, but neither reads
its input when called: they return pipelines that read it as they are iterated, can be built inside a
``tf.function``, and can be sent to tf.data service workers. Memory stays bounded only if the ratings are read
in a streaming way too: :func:`stream_ratings` reads a GroupLens file a block at a time (``load_ratings`` reads its
file whole).

    ratings = tfrank.data.stream_ratings("25m", "path/to/ml-25m")
    lists = tfrank.data.stream_lists(ratings, sorted_by_user=True, batch_size=4096)

How users are grouped, and what is held in memory:

- ``sorted_by_user=True`` (ml-1m, ml-20m and ml-25m are sorted by user): ratings are read in batches and a ``scan``
  cuts each batch after its last complete user, carrying the incomplete user into the next batch; each chunk of
  whole users is sampled at once. Memory is a batch of ratings plus the largest user's ratings, whatever the data
  size. Lists come in the same order as from ``sample_lists``. Input that is not sorted stops iteration with an
  error that names the two user ids out of order.
- ``sorted_by_user=False`` (ml-100k, shuffled data): ``group_by_window`` keyed by user, one rating per element.
  A user's group is complete only at the end of the input, so every rating (its ``user_id``, ``movie_id``,
  ``user_rating`` and ``timestamp``) is held until then, one tf.data element each; users' lists then come in no
  particular order. Prefer ``sample_lists`` there unless the pipeline has to be tf.data.

:func:`stream_lists_sharded` splits the users into shards (a hash of the user id) under a leading
``Dataset.range(num_shards)``, so that tf.data service's dynamic sharding, which hands each element of that range
to one worker, sends each user's ratings to one worker.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from tfrank.data import movielens
from tfrank.data._tfdata import ALL_ROWS, ROWS_PER_BATCH, batched_form, plain
from tfrank.data.lists import (
    _check_sampling,
    _hash,
    _is_batched,
    _one_rating_per_pair,
    _rating_keys,
    _sample_grouped,
    _split_bounds,
    _split_points,
)

# Bytes of a ratings file read at a time by stream_ratings: tens of thousands of lines, a few MB once split.
_BLOCK_BYTES = 1 << 20
# The GroupLens rating files that come sorted by user (ml-100k's u.data comes in no order).
SORTED_BY_USER_VARIANTS = ("1m", "20m", "25m")
# Users are spread over shards by a hash of their id with this seed, so that shards do not follow id ranges.
_SHARD_SEED = 0x5EED


def stream_ratings(variant: str = "25m", source: str | os.PathLike | None = None) -> tf.data.Dataset:
    """A local GroupLens ratings file read a block at a time, in batches of ratings: memory bounded by a few blocks.

    The same ratings, in the same order, as :func:`tfrank.data.load_ratings` with a ``batch_size`` (same features,
    checks and error messages), in batches of the lines of each MiB of the file, read one block at a time
    (``load_ratings`` reads the whole file at once and holds it and its lines in memory). The file's size is read
    when the dataset is built: a file that grows afterwards is read up to that size.

    Args:
      variant: one of :data:`tfrank.data.VARIANTS`.
      source: the GroupLens folder, a folder holding it, or the zip; None for ``TFRANK_MOVIELENS_DIR``.

    Raises:
      ValueError: unknown variant, or no local source (TFDS datasets are read in batches already: use
        ``load_ratings(source="tfds", batch_size=...)``).
      FileNotFoundError: a local source without the ratings file.
      tf.errors.InvalidArgumentError: when iterated, at the first malformed line (file and line number named).
    """
    movielens._check_variant(variant)
    where = movielens._resolve_source(source)
    if where == "tfds":
        raise ValueError(f"source={source!r}: stream_ratings reads local GroupLens files; for TFDS use "
                         "load_ratings(source='tfds', batch_size=...), which already reads in batches")  # fmt: skip
    layout = movielens._LAYOUTS[variant]
    path = movielens._local_file(where, variant, layout.ratings)
    return _numbered_line_batches(path, layout.header).map(
        plain(lambda numbers, lines: movielens._parse_rating_lines(numbers, lines, path, variant)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )


def stream_movielens_ratings(variant: str = "25m", source: str | os.PathLike | None = None,
                             data_dir: str | None = None) -> tuple[tf.data.Dataset, bool]:  # fmt: skip
    """MovieLens ratings in batches, read as they are iterated, and whether they come sorted by user.

    Local GroupLens files are read with :func:`stream_ratings`; TFDS (``source="tfds"``, or None without
    ``TFRANK_MOVIELENS_DIR``) with ``load_ratings(batch_size=...)``, which reads TFDS's records in batches. Sorted by
    user: the local files of :data:`SORTED_BY_USER_VARIANTS`; TFDS's order is not known, so False there.
    """
    movielens._check_variant(variant)
    if movielens._resolve_source(source) == "tfds":
        return movielens.load_ratings(variant, source="tfds", data_dir=data_dir, batch_size=ROWS_PER_BATCH), False
    return stream_ratings(variant, source), variant in SORTED_BY_USER_VARIANTS


def _numbered_line_batches(path: str, header: bool) -> tf.data.Dataset:
    """Batches ``(line_numbers int64 [B], lines string [B])`` of ``path`` as ``movielens._numbered_lines`` gives
    them, but read in blocks of ``_BLOCK_BYTES``: each block is split into lines at once and its unfinished last line
    carried into the next block, so no tf.data work is paid per line and memory holds a block, not the file."""
    size = os.path.getsize(path)
    tail = size % _BLOCK_BYTES
    blocks = tf.data.FixedLengthRecordDataset(path, _BLOCK_BYTES, footer_bytes=tail)
    if tail:  # the reader takes whole records only: the rest of the file is one more, shorter record
        blocks = blocks.concatenate(tf.data.FixedLengthRecordDataset(path, tail, header_bytes=size - tail))
    marked = blocks.map(plain(lambda block: (block, False))).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(b""), True)))

    def cut(state: tuple[tf.Tensor, tf.Tensor], element: tuple[tf.Tensor, tf.Tensor]
            ) -> tuple[tuple[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:  # fmt: skip
        unfinished, lines_before = state
        block, is_end = element
        pieces = tf.raw_ops.StringSplitV2(input=tf.reshape(unfinished + block, [1]), sep="\n").values
        # At the end, the unfinished line is the last line, unless the file ended with a newline.
        lines = tf.cond(is_end, lambda: tf.boolean_mask(pieces, pieces != ""), lambda: pieces[:-1])
        numbers = lines_before + 1 + tf.range(tf.size(lines, out_type=tf.int64))
        keep = numbers > (1 if header else 0)
        return (pieces[-1], lines_before + tf.size(lines, out_type=tf.int64)), (numbers[keep], lines[keep])

    line_batches = marked.scan((tf.constant(b""), tf.constant(0, tf.int64)), plain(cut))
    return line_batches.filter(plain(lambda numbers, lines: tf.size(lines) > 0))  # the parse checks need a line


def stream_split(ratings: tf.data.Dataset, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 42
                 ) -> tuple[tf.data.Dataset, ...]:  # fmt: skip
    """:func:`tfrank.data.split` as per-rating hash filters over ``ratings``: the same parts, nothing read in advance.

    Each part keeps the ratings whose hash of ``(seed, user_id, movie_id)`` falls in its fraction, in input order
    and in the element form of ``ratings`` (a batch keeps its ratings of that part, possibly none). Each part reads
    all of ``ratings`` when iterated.

    Raises:
      ValueError: bad ``fractions``, or a ``user_id`` that is not a scalar or a batch of scalars.
    """
    bounds = _split_bounds(fractions)
    batched = _is_batched(ratings)

    def part(low: float, high: float) -> tf.data.Dataset:
        def in_part(features: dict[str, tf.Tensor]) -> tf.Tensor:
            points = _split_points(features, seed)
            return (points >= low) & (points < high)

        if not batched:
            return ratings.filter(plain(in_part))

        def keep(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            mask = in_part(features)
            return {name: tf.boolean_mask(values, mask) for name, values in features.items()}

        return ratings.map(plain(keep))

    return tuple(part(low, high) for low, high in zip(bounds[:-1], bounds[1:]))


def stream_lists(ratings: tf.data.Dataset, list_size: int | None = 5, num_lists_per_user: int = 50,
                 min_list_size: int = 5, seed: int = 0, sorted_by_user: bool = False,
                 batch_size: int | None = None) -> tf.data.Dataset:  # fmt: skip
    """:func:`tfrank.data.sample_lists` as a tf.data pipeline: each user gets the same lists, byte for byte.

    Same arguments, element form and rules as ``sample_lists`` (one rating per (user, movie) pair, the latest;
    users with fewer than ``min_list_size`` distinct movies dropped; ``list_size=None`` for full lists). Nothing is
    read when it is called: the lists are sampled as the dataset is iterated, every time it is iterated.

    Args:
      ratings: ratings (``user_id``, ``movie_id``, ``user_rating``, optionally ``timestamp``) one per element or
        in batches.
      list_size: movies per list, or None for each user's full list.
      num_lists_per_user: lists drawn per user.
      min_list_size: fewest distinct rated movies a user needs to be kept; at least ``list_size``.
      seed: the same seed gives the same lists as ``sample_lists`` with that seed.
      sorted_by_user: True when ``ratings`` come in non-decreasing ``user_id`` order: memory then stays bounded
        (see the module docstring) and lists come in ``sample_lists``'s order. False groups with
        ``group_by_window``, which holds every rating until the input ends.
      batch_size: None for one list per element; an int for batches of lists (fixed-size lists stacked, full lists
        as ``tf.RaggedTensor``).

    Raises:
      ValueError: bad arguments.
      tf.errors.InvalidArgumentError: while iterating, when ``sorted_by_user=True`` and the ratings are not sorted.
    """
    _check_sampling(list_size, num_lists_per_user, min_list_size, batch_size)
    keys = _rating_keys(ratings)
    users = _whole_users_in_order(ratings, keys) if sorted_by_user else _whole_users_by_window(ratings, keys)

    def sample(columns: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        return _sample_grouped(*_one_rating_per_pair(dict(columns)), list_size, num_lists_per_user, min_list_size,
                               seed)  # fmt: skip

    # Sampling a chunk overlaps with reading and cutting the next ones; deterministic keeps the order of the users.
    lists = users.map(plain(sample), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if list_size is not None and batch_size is not None:
        return lists.rebatch(batch_size)
    lists = lists.unbatch()
    if list_size is None:  # rows of ragged tensors come as ragged specs of rank 1: make them plain tensors
        lists = lists.map(plain(lambda features, labels: (dict(features), tf.identity(labels))))
        if batch_size is not None:
            lists = lists.ragged_batch(batch_size)
    return lists


def stream_lists_sharded(ratings: tf.data.Dataset, num_shards: int, list_size: int | None = 5,
                         num_lists_per_user: int = 50, min_list_size: int = 5, seed: int = 0,
                         sorted_by_user: bool = False, batch_size: int | None = None) -> tf.data.Dataset:  # fmt: skip
    """:func:`stream_lists` of each of ``num_shards`` shards of users in turn, for tf.data service.

    The dataset starts with ``Dataset.range(num_shards)``; each shard keeps the ratings of the users whose hashed id
    falls in it and streams their lists. Distributed with
    ``tf.data.experimental.service.distribute(processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
    ...)``, the dispatcher hands each shard to exactly one worker, so all of a user's ratings are grouped on one
    worker and the union of the workers' lists is ``sample_lists``'s. Every shard reads all of ``ratings``; use a few
    shards per worker. Unsharded, it gives the same lists as ``stream_lists``, grouped by shard.

    Raises:
      ValueError: ``num_shards`` < 1, or bad arguments for :func:`stream_lists`.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards={num_shards}: must be >= 1, e.g. a few per tf.data service worker")
    _check_sampling(list_size, num_lists_per_user, min_list_size, batch_size)

    def lists_of_shard(shard: tf.Tensor) -> tf.data.Dataset:
        return stream_lists(_users_of_shard(ratings, num_shards, shard), list_size, num_lists_per_user,
                            min_list_size, seed, sorted_by_user, batch_size)  # fmt: skip

    return tf.data.Dataset.range(num_shards).flat_map(plain(lists_of_shard))


def stream_lists_of_shard(ratings: tf.data.Dataset, num_shards: int, shard: int, list_size: int | None = 5,
                          num_lists_per_user: int = 50, min_list_size: int = 5, seed: int = 0,
                          sorted_by_user: bool = False, batch_size: int | None = None) -> tf.data.Dataset:  # fmt: skip
    """The :func:`stream_lists` of one shard of users: those whose :func:`user_shards` is ``shard``.

    The shards are those of :func:`stream_lists_sharded`; the other users' ratings are dropped as they are read, so
    grouping holds only this shard's ratings (all of them when ``sorted_by_user=False``, a batch otherwise).

    Raises:
      ValueError: ``shard`` not in ``[0, num_shards)``, or bad arguments for :func:`stream_lists`.
    """
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard={shard} of num_shards={num_shards}: need num_shards >= 1 and 0 <= shard < num_shards")
    if num_shards > 1:
        ratings = _users_of_shard(ratings, num_shards, tf.constant(shard, tf.int64))
    return stream_lists(ratings, list_size, num_lists_per_user, min_list_size, seed, sorted_by_user, batch_size)


def user_shards(user_ids: tf.Tensor, num_shards: int) -> tf.Tensor:
    """The shard (int64 in ``[0, num_shards)``) of each user id: a hash of the id, the same on every machine."""
    user_hash = _hash(_SHARD_SEED, tf.cast(user_ids, tf.int64))
    return tf.cast(user_hash % tf.constant(num_shards, tf.uint64), tf.int64)


def stream_vocabularies(ratings: tf.data.Dataset, keys: Sequence[str] = ("user_id", "movie_id")
                        ) -> tuple[np.ndarray, ...]:  # fmt: skip
    """The sorted distinct values of each feature ``keys`` of ``ratings``, read batch by batch: memory holds the
    distinct values, not the ratings.

    Raises:
      tf.errors.InvalidArgumentError: a data check failed while ``ratings`` was read (a malformed line, say).
    """
    batches = _rating_batches(ratings, tuple(keys)).map(
        plain(lambda batch: {key: tf.unique(values)[0] for key, values in batch.items()}),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    distinct = {key: np.zeros([0], batches.element_spec[key].dtype.as_numpy_dtype) for key in keys}
    pending: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    pending_size = 0

    def merge() -> None:
        for key in keys:
            distinct[key] = np.unique(np.concatenate([distinct[key], *pending[key]]))
            pending[key] = []

    for batch in batches.as_numpy_iterator():
        for key in keys:
            pending[key].append(batch[key])
        pending_size += sum(len(values) for values in batch.values())
        # Merged now and then, not per batch: each merge sorts the distinct values found so far.
        if pending_size > 4 * sum(len(values) for values in distinct.values()) + ROWS_PER_BATCH:
            merge()
            pending_size = 0
    merge()
    return tuple(distinct[key] for key in keys)


# ----------------------------------------------------------------------------------------------------------------


def _users_of_shard(ratings: tf.data.Dataset, num_shards: int, shard: tf.Tensor) -> tf.data.Dataset:
    """The ratings of the users whose hashed id is ``shard`` modulo ``num_shards``, in input order."""
    def in_shard(features: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.equal(user_shards(features["user_id"], num_shards), tf.cast(shard, tf.int64))

    if not _is_batched(ratings):
        return ratings.filter(plain(in_shard))
    return ratings.map(plain(lambda features: {name: tf.boolean_mask(values, in_shard(features))
                                               for name, values in features.items()}))  # fmt: skip


def _rating_batches(ratings: tf.data.Dataset, keys: tuple[str, ...]) -> tf.data.Dataset:
    """The features ``keys`` of ``ratings`` in batches (rank-1 columns), in input order."""
    def select(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {key: features[key] for key in keys}

    ratings = batched_form(ratings) or ratings
    if _is_batched(ratings):
        return ratings.map(plain(select))
    return ratings.map(plain(select)).batch(ROWS_PER_BATCH)


def _whole_users_in_order(ratings: tf.data.Dataset, keys: tuple[str, ...]) -> tf.data.Dataset:
    """Chunks of rating columns holding whole users, from ratings sorted by user: each batch is cut after its last
    complete user and the rest carried into the next batch; an end marker flushes the last user."""
    batches = _rating_batches(ratings, keys)
    nothing = {key: tf.zeros([0], spec.dtype) for key, spec in batches.element_spec.items()}
    marked = batches.map(plain(lambda batch: (batch, False))).concatenate(
        tf.data.Dataset.from_tensors((nothing, True)))

    def cut(state: tuple[dict[str, tf.Tensor], tf.Tensor], element: tuple[dict[str, tf.Tensor], tf.Tensor]
            ) -> tuple[tuple[dict[str, tf.Tensor], tf.Tensor], dict[str, tf.Tensor]]:  # fmt: skip
        carried, previous_user = state
        batch, is_end = element
        columns = {key: tf.concat([carried[key], batch[key]], axis=0) for key in keys}
        users = tf.concat([previous_user[None], tf.cast(columns["user_id"], tf.int64)], axis=0)
        check = _assert_sorted_by_user(users)
        size = tf.size(users) - 1
        last_user_size = tf.reduce_sum(tf.cast(tf.equal(users[1:], users[-1:]), tf.int32))
        end = tf.where(is_end, size, size - last_user_size)
        with tf.control_dependencies([check]):
            whole = {key: tf.identity(values[:end]) for key, values in columns.items()}
        rest = {key: values[end:] for key, values in columns.items()}
        return (rest, users[-1]), whole

    first = (nothing, tf.constant(tf.int64.min, tf.int64))
    return marked.scan(first, plain(cut))


def _assert_sorted_by_user(users: tf.Tensor) -> tf.Operation:
    """Checks that ``users`` (the previous batch's last user id, then a batch's) never decrease."""
    decreasing = tf.where(users[1:] < users[:-1])[:, 0]
    last = tf.size(users, out_type=tf.int64) - 1
    first = tf.reduce_min(tf.concat([decreasing, [last]], axis=0))
    message = tf.strings.format(
        "ratings are not sorted by user: user_id {} comes after user_id {}; pass sorted_by_user=False",
        (tf.gather(users, tf.minimum(first + 1, last)), tf.gather(users, first)),
    )
    return tf.debugging.Assert(tf.size(decreasing) == 0, [message])


def _whole_users_by_window(ratings: tf.data.Dataset, keys: tuple[str, ...]) -> tf.data.Dataset:
    """One element per user, all of the user's ratings as columns in input order, by ``group_by_window``."""
    if _is_batched(ratings) or batched_form(ratings) is not None:
        rows = _rating_batches(ratings, keys).unbatch()
    else:
        rows = ratings.map(plain(lambda features: {key: features[key] for key in keys}))
    return rows.group_by_window(
        key_func=plain(lambda features: tf.cast(features["user_id"], tf.int64)),
        reduce_func=plain(lambda user, window: window.batch(ALL_ROWS)),
        window_size=ALL_ROWS,
    )
