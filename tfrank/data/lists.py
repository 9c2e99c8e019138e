"""Ratings -> ranking lists: a deterministic split, per-user grouping with seeded sampling, and list batching.

A list example is ``({"user_id": int64 [], "movie_id": int64 [list_size]}, labels float32 [list_size])`` with
``labels = (user_rating - 1) / 4`` as in the TF Recommenders listwise tutorial, floored at 0 so that the 0.5-star
ratings of ml-20m / ml-25m stay valid items (a negative label means padding to the losses and metrics).

How it is built, and why: :func:`split` and :func:`sample_lists` read their input dataset once, when they are
called, work on whole columns with vectorised TensorFlow ops, and return datasets that serve the result from
memory (:func:`from_memory`). Grouping is done with tensors, not with ``group_by_window``: the ratings are sorted by
user (the sort is skipped when the input is already grouped by user, as every GroupLens file except ml-100k is),
cut into per-user segments, and all lists of all users are sampled at once. Per-element ``tf.data`` work costs
microseconds per element, which at tens of millions of ratings adds up to minutes. And the work runs eagerly
rather than in ``tf.data`` functions because building a graph has a fixed cost per op and tf.data instantiates
every function again for each iterator: for MovieLens 100K that fixed cost dwarfs the work itself. Called inside a
``tf.function``, the same code builds graph ops instead. Memory: every rating is held at once as columns, plus the
sampled lists. Ratings one per element are read as whole columns too when the dataset is one that
:func:`tfrank.data.load_ratings`, :func:`split`, :func:`from_memory` or :func:`tfrank.data.synthetic.ratings_dataset`
returned (it remembers its batches or in-memory tensors), so the plain calls cost what ``batch_size=`` calls cost;
any other per-element dataset (after a ``map``, say) gives the same lists but pays the per-element cost. Likewise
:func:`batch_lists` slices the lists of :func:`sample_lists` from memory instead of batching them one by one.

:mod:`tfrank.data.streaming` builds the same lists as a ``tf.data`` pipeline (``group_by_window``, or a scan over
input sorted by user), for data too large for memory and for tf.data service; both call :func:`_sample_grouped`.

Randomness is counter-based: each list draws from a 64-bit integer hash (the SplitMix64 finaliser) of
``(seed, user_id, list index, draw)``, and the ``list_size`` distinct positions are chosen with Floyd's sampling
algorithm, then put in a hashed random order. So a user's lists depend only on the seed, the user id and that
user's ratings (in their input order), and are byte-identical on every run and machine. (``tf.random`` stateless
ops take one seed per call, and the batched ``index_shuffle`` is slower per draw than one hash.)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfrank.data._tfdata import (
    ALL_ROWS,
    ROWS_PER_BATCH,
    batched_form,
    one_line,
    plain,
    rows_in_memory,
    with_rows_in_memory,
)
from tfrank.ops import PADDING_ID, PADDING_LABEL

# Options for datasets over in-memory tensors, which have nothing to rewrite or tune. tf.data's default graph
# rewrites would copy the tensors per iterator. With autotuning on, destroying an iterator after a training epoch
# often blocks, idle, on its tuning thread's wait.
_IN_MEMORY_OPTIONS = tf.data.Options()
_IN_MEMORY_OPTIONS.experimental_optimization.apply_default_optimizations = False
_IN_MEMORY_OPTIONS.autotune.enabled = False
_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, the SplitMix64 increment
_RATING_KEYS = ("user_id", "movie_id", "user_rating")


def split(ratings: tf.data.Dataset, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 42
          ) -> tuple[tf.data.Dataset, ...]:  # fmt: skip
    """Splits ratings into disjoint parts (e.g. train, validation, test) by a stateless hash of the pair.

    Each rating goes to part ``i`` when ``hash(user_id, movie_id, seed)``, read as a uniform number in [0, 1), falls
    in ``[sum(fractions[:i]), sum(fractions[:i + 1]))``. The parts are disjoint, together hold every rating, keep
    the input order, and do not depend on it; repeated ratings of one (user, movie) pair all go to the same part.
    Part sizes match ``fractions`` only in expectation (at 100k ratings, 70/15/15 comes out within a few hundred
    ratings of 70,000 / 15,000 / 15,000). ``ratings`` is read once, when ``split`` is called; the parts are served
    from memory.

    Args:
      ratings: ratings one per element (scalar features) or in batches (rank-1 features), with at least
        ``user_id`` and ``movie_id``; other features are carried along.
      fractions: positive numbers summing to 1, one per part.
      seed: another seed gives another split.

    Returns:
      One dataset per fraction, in the same element form as ``ratings``.

    Raises:
      ValueError: bad ``fractions``, or ratings whose features are not one fixed-shape tensor per rating.
      tf.errors.InvalidArgumentError: a check of the data failed while ``ratings`` was read (a malformed line of a
        MovieLens file, say); when called eagerly, the message is that check's one line (file, line, fix).
    """
    bounds = _split_bounds(fractions)
    batched = _is_batched(ratings)
    columns = _collect(ratings)
    points = _split_points(columns, seed)
    parts = []
    for low, high in zip(bounds[:-1], bounds[1:]):
        rows = tf.where((points >= low) & (points < high))[:, 0]
        part = {name: tf.gather(values, rows) for name, values in columns.items()}
        parts.append(from_memory(part, ROWS_PER_BATCH if batched else None))
    return tuple(parts)


def sample_lists(ratings: tf.data.Dataset, list_size: int | None = 5, num_lists_per_user: int = 50,
                 min_list_size: int = 5, seed: int = 0, batch_size: int | None = None) -> tf.data.Dataset:  # fmt: skip
    """Groups ratings by user and samples ranking lists, deterministically for a given seed.

    A movie the user rated more than once counts once, with its latest rating (by ``timestamp`` when the ratings
    have one, a tie or no timestamps going to the rating that comes later in the input), so a list never repeats a
    movie. Users with fewer than ``min_list_size`` distinct movies are dropped. Every kept user gets
    ``num_lists_per_user`` lists of ``list_size`` distinct movies that the user rated (sampled without replacement
    within a list, with replacement across lists). ``list_size=None`` gives each kept user one list of all their
    ratings instead, in input order, for evaluation on full lists (``num_lists_per_user`` is then ignored).

    Element: ``({"user_id": int64 [], "movie_id": int64 [list_size]}, labels float32 [list_size])``, labels
    ``max(user_rating - 1, 0) / 4``; with ``list_size=None`` the last dimension varies per user. Lists come grouped by
    user, users in increasing id order (or input order when the input is already grouped by user). ``ratings`` is
    read once, when ``sample_lists`` is called; the lists are served from memory.

    Args:
      ratings: ratings (``user_id``, ``movie_id``, ``user_rating``, optionally ``timestamp``) one per element or
        in batches.
      list_size: movies per list, or None for each user's full list.
      num_lists_per_user: lists drawn per user.
      min_list_size: fewest distinct rated movies a user needs to be kept; at least ``list_size``.
      seed: the same seed gives the same lists, byte for byte.
      batch_size: None for one list per element; an int for batches of lists (fixed-size lists stacked, full lists
        as ``tf.RaggedTensor``), the same as :func:`batch_lists` without its per-list cost.

    Raises:
      ValueError: bad arguments.
      tf.errors.InvalidArgumentError: as in :func:`split`, when reading ``ratings`` fails a data check.
    """
    _check_sampling(list_size, num_lists_per_user, min_list_size, batch_size)
    # No reference to the columns is kept here, so that _sample can free them once it has sorted them.
    lists = _sample(*_rating_columns(ratings), list_size, num_lists_per_user, min_list_size, seed)
    return from_memory(lists, batch_size)


def batch_lists(lists: tf.data.Dataset, batch_size: int, ragged: bool = False, drop_remainder: bool = False,
                pad_to: int | None = None) -> tf.data.Dataset:  # fmt: skip
    """Batches list examples, padded (the default) or ragged, and prefetches.

    Padded: ``movie_id`` and ``labels`` are padded to the longest list of the batch, or to ``pad_to``, with
    ``PADDING_ID`` and ``PADDING_LABEL`` (the losses and metrics skip items whose label is < 0). Lists longer
    than ``pad_to`` stop iteration with an error. Ragged: ``movie_id`` and ``labels`` become ``tf.RaggedTensor``
    [batch_size, None].
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    if pad_to is not None and (ragged or pad_to < 1):
        raise ValueError(f"pad_to={pad_to}: must be >= 1 and only with ragged=False")
    if ragged:
        return lists.ragged_batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    features_spec, _ = lists.element_spec
    list_dim = features_spec["movie_id"].shape[0]
    if list_dim is not None and (pad_to is None or pad_to == list_dim):
        in_memory = rows_in_memory(lists)
        if in_memory is not None:  # lists of sample_lists: slice their tensors in batches, no per-list work
            if drop_remainder:
                rows = tf.shape(tf.nest.flatten(in_memory)[0], out_type=tf.int64)[0]
                in_memory = tf.nest.map_structure(lambda t: t[: rows - rows % batch_size], in_memory)
            return from_memory(in_memory, batch_size).prefetch(tf.data.AUTOTUNE)
        return lists.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    if pad_to is not None:
        lists = lists.map(plain(lambda features, labels: _check_fits(features, labels, pad_to)))
    padded_shapes = (
        {name: tf.TensorShape([pad_to] * spec.shape.rank) for name, spec in features_spec.items()},
        tf.TensorShape([pad_to]),
    )
    padding_values = (
        {name: tf.constant(PADDING_ID if spec.dtype.is_integer else 0, spec.dtype)
         for name, spec in features_spec.items()},
        tf.constant(PADDING_LABEL, tf.float32),
    )  # fmt: skip
    return lists.padded_batch(
        batch_size, padded_shapes=padded_shapes, padding_values=padding_values, drop_remainder=drop_remainder
    ).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------------------------


def _check_sampling(list_size: int | None, num_lists_per_user: int, min_list_size: int,
                    batch_size: int | None) -> None:  # fmt: skip
    if list_size is not None and list_size < 1:
        raise ValueError(f"list_size={list_size}: must be >= 1, or None for each user's full list")
    if num_lists_per_user < 1:
        raise ValueError(f"num_lists_per_user={num_lists_per_user}: must be >= 1")
    if min_list_size < 1:
        raise ValueError(f"min_list_size={min_list_size}: must be >= 1")
    if list_size is not None and min_list_size < list_size:
        raise ValueError(
            f"min_list_size={min_list_size} < list_size={list_size}: a user needs at least list_size ratings to "
            f"fill a list without repeats; set min_list_size >= {list_size}"
        )
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1, or None for one list per element")


def _split_bounds(fractions: Sequence[float]) -> list[float]:
    """The part boundaries in [0, 1) of a split into ``fractions``; the last one is open-ended."""
    fractions = tuple(float(f) for f in fractions)
    if not fractions or any(f <= 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions={fractions}: must be positive and sum to 1, e.g. (0.7, 0.15, 0.15)")
    bounds = [sum(fractions[:i]) for i in range(len(fractions) + 1)]
    bounds[-1] = 2.0  # the last part takes everything above the previous bound, rounding included
    return bounds


def _split_points(columns: dict[str, tf.Tensor], seed: int) -> tf.Tensor:
    """Each rating's place in [0, 1) that decides its part: a hash of ``(seed, user_id, movie_id)``."""
    user_ids, movie_ids = (tf.cast(columns[key], tf.int64) for key in ("user_id", "movie_id"))
    return _to_unit_interval(_hash(seed, user_ids, movie_ids))


def _is_batched(ratings: tf.data.Dataset) -> bool:
    rank = ratings.element_spec["user_id"].shape.rank
    if rank not in (0, 1):
        raise ValueError(f"ratings user_id has shape {ratings.element_spec['user_id'].shape}: expected [] or [None]")
    return rank == 1


def _mix64(x: tf.Tensor) -> tf.Tensor:
    """The SplitMix64 finaliser: a bijective avalanche of uint64 values."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(30, tf.uint64)))
    x = x * tf.constant(0xBF58476D1CE4E5B9, tf.uint64)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(27, tf.uint64)))
    x = x * tf.constant(0x94D049BB133111EB, tf.uint64)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(31, tf.uint64)))


def _hash(seed: int | tf.Tensor, *values: tf.Tensor) -> tf.Tensor:
    """A uint64 hash of ``(seed, *values)``, elementwise over broadcast ``values`` (integers)."""
    golden = tf.constant(_GOLDEN, tf.uint64)
    h = _mix64(tf.bitcast(tf.cast(seed, tf.int64), tf.uint64) * golden + golden)
    for value in values:
        value = tf.bitcast(tf.cast(value, tf.int64), tf.uint64)
        h = _mix64(tf.bitwise.bitwise_xor(h, value) + golden)
    return h


def _to_unit_interval(h: tf.Tensor) -> tf.Tensor:
    """The top 53 bits of a uint64 hash as a float64 in [0, 1)."""
    return tf.cast(tf.bitwise.right_shift(h, tf.constant(11, tf.uint64)), tf.float64) * (2.0**-53)


def _labels(ratings: tf.Tensor) -> tf.Tensor:
    return tf.maximum(ratings - 1.0, 0.0) / 4.0


def _collect(ratings: tf.data.Dataset, keys: Sequence[str] | None = None) -> dict[str, tf.Tensor]:
    """Features ``keys`` (all when None) of every rating, each as one tensor over all ratings in input order."""
    keys = tuple(ratings.element_spec) if keys is None else tuple(keys)
    in_memory = rows_in_memory(ratings)
    if isinstance(in_memory, dict) and all(isinstance(in_memory[key], tf.Tensor) for key in keys):
        return {key: in_memory[key] for key in keys}
    ratings = batched_form(ratings) or ratings
    if not all(_is_column(spec) for spec in ratings.element_spec.values()):
        ratings = ratings.map(plain(lambda features: {key: features[key] for key in keys}))
    if not _is_batched(ratings):
        ratings = ratings.batch(ROWS_PER_BATCH)
    for key, spec in ratings.element_spec.items():
        if not _is_column(spec):
            raise ValueError(f"ratings feature {key!r} has spec {spec}: expected a tensor of fixed shape per rating")
    nothing = {key: tf.zeros([0, *spec.shape[1:]], spec.dtype) for key, spec in ratings.element_spec.items()}
    if tf.executing_eagerly():
        # A Python loop over batches of ratings (a few hundred at most), not over ratings: unlike rebatch, it
        # traces no function. Features not asked for are dropped batch by batch.
        try:
            batches = [{key: batch[key] for key in keys} for batch in ratings] + [nothing]
        except tf.errors.InvalidArgumentError as error:  # a data check failed where the ratings were read
            raise one_line(error) from error
        return {key: tf.concat([batch[key] for batch in batches], axis=0) for key in keys}
    # Rebatching gives one batch of every rating, or none when there are no ratings: then the empty one follows.
    everything = ratings.rebatch(ALL_ROWS).concatenate(tf.data.Dataset.from_tensors(nothing))
    columns = everything.take(1).get_single_element()
    return {key: columns[key] for key in keys}


def _rating_columns(ratings: tf.data.Dataset) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``user_id`` and ``movie_id`` (int64) and ``user_rating`` (float32) of every rating, one per (user, movie)."""
    return _one_rating_per_pair(_collect(ratings, _rating_keys(ratings)))


def _rating_keys(ratings: tf.data.Dataset) -> tuple[str, ...]:
    """The features that list sampling reads: ``_RATING_KEYS``, and ``timestamp`` when the ratings have one."""
    return _RATING_KEYS + (("timestamp",) if "timestamp" in ratings.element_spec else ())


def _one_rating_per_pair(columns: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Typed ``user_id``, ``movie_id``, ``user_rating`` columns with one rating per (user, movie) pair.

    ``columns`` (of :func:`_rating_keys`) is emptied as it is read, so that the caller holds no reference to them.
    """
    users, movies, stars = (tf.cast(columns.pop(key), dtype)
                            for key, dtype in zip(_RATING_KEYS, (tf.int64, tf.int64, tf.float32)))  # fmt: skip
    timestamps = tf.cast(columns.pop("timestamp"), tf.int64) if "timestamp" in columns else None
    return _latest_rating_per_pair(users, movies, stars, timestamps)


def _latest_rating_per_pair(users: tf.Tensor, movies: tf.Tensor, stars: tf.Tensor, timestamps: tf.Tensor | None
                            ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:  # fmt: skip
    """Drops all but one rating of each (user, movie) pair: the latest by timestamp, a tie to the later in input.

    Without timestamps the later in input order is kept. The kept ratings stay in input order, so input without
    repeated pairs comes out unchanged. Pairs are found by hashing (``tf.unique``), not sorting; input sorted by
    user then movie, as most GroupLens files are, has no repeats and skips even that.
    """
    def keep_latest() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        pair = _pair_index(users, movies)
        num_pairs = tf.reduce_max(pair) + 1
        positions = tf.range(tf.size(pair, out_type=tf.int64))
        candidates = positions
        if timestamps is not None:
            latest = tf.math.unsorted_segment_max(timestamps, pair, num_pairs)
            candidates = tf.where(timestamps == tf.gather(latest, pair), positions, -1)
        kept = tf.where(positions == tf.gather(tf.math.unsorted_segment_max(candidates, pair, num_pairs), pair))[:, 0]
        return tuple(tf.gather(column, kept) for column in (users, movies, stars))

    sorted_pairs = (users[1:] > users[:-1]) | ((users[1:] == users[:-1]) & (movies[1:] > movies[:-1]))
    return tf.cond(tf.reduce_all(sorted_pairs), lambda: (users, movies, stars), keep_latest)


def _pair_index(users: tf.Tensor, movies: tf.Tensor) -> tf.Tensor:
    """For each rating, the index of its (user, movie) pair among the distinct pairs (int64, from 0)."""
    largest_movie = tf.reduce_max(movies)
    # One int64 key per pair when the ids allow it: one column is hashed faster than rows of two.
    fits = (tf.reduce_min(users) >= 0) & (tf.reduce_min(movies) >= 0) & (
        tf.reduce_max(users) <= (tf.int64.max - largest_movie) // (largest_movie + 1))

    def by_key() -> tf.Tensor:
        return tf.unique(users * (largest_movie + 1) + movies, out_idx=tf.int64)[1]

    def by_row() -> tf.Tensor:
        return tf.raw_ops.UniqueV2(x=tf.stack([users, movies], axis=1), axis=[0], out_idx=tf.int64)[1]

    return tf.cond(fits, by_key, by_row)


def _is_column(spec: tf.TypeSpec) -> bool:
    return isinstance(spec, tf.TensorSpec) and spec.shape[1:].is_fully_defined()


def _sample(users: tf.Tensor, movies: tf.Tensor, ratings: tf.Tensor, list_size: int | None, num_lists: int,
            min_list_size: int, seed: int) -> tuple[dict[str, tf.Tensor], tf.Tensor]:  # fmt: skip
    """All lists of all users from flat rating columns, as stacked (or ragged) tensors."""
    def by_user() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        order = tf.argsort(users, stable=True)
        return tuple(tf.gather(t, order) for t in (users, movies, ratings))

    # Already grouped input (sorted by user) is used as it is: no sort, and no copy.
    grouped = tf.reduce_all(users[1:] >= users[:-1])
    users, movies, ratings = tf.cond(grouped, lambda: (users, movies, ratings), by_user)
    return _sample_grouped(users, movies, ratings, list_size, num_lists, min_list_size, seed)


def _sample_grouped(users: tf.Tensor, movies: tf.Tensor, ratings: tf.Tensor, list_size: int | None, num_lists: int,
                   min_list_size: int, seed: int) -> tuple[dict[str, tf.Tensor], tf.Tensor]:  # fmt: skip
    """The lists of every user in rating columns where each user's ratings are contiguous, one per movie.

    The one sampler of both :func:`sample_lists` (all users at once) and :func:`tfrank.data.stream_lists` (a chunk
    of whole users at a time): a user's lists depend only on the seed, the user id and that user's ratings in order,
    so any grouping that keeps each user whole gives each user the same lists.
    """
    user_ids, _, lengths = tf.unique_with_counts(users, out_idx=tf.int64)
    kept = tf.where(lengths >= min_list_size)[:, 0]
    starts = tf.gather(tf.cumsum(lengths, exclusive=True), kept)
    user_ids, lengths = tf.gather(user_ids, kept), tf.gather(lengths, kept)

    if list_size is None:
        positions = tf.ragged.range(starts, starts + lengths)
        return (
            {"user_id": user_ids, "movie_id": tf.gather(movies, positions)},
            _labels(tf.gather(ratings, positions)),
        )

    list_number = tf.range(tf.size(user_ids, out_type=tf.int64) * num_lists)
    owner, list_index = list_number // num_lists, list_number % num_lists
    list_users = tf.gather(user_ids, owner)
    key = _hash(seed, list_users, list_index)
    # Floyd's algorithm: for j = n - k, ..., n - 1 draw t in [0, j]; take t, or j if t was already taken. All the
    # draws are made at once; only the "already taken" test runs step by step.
    # A numpy array: in a graph, tf.constant would round a list of Python ints above 2**53 through float64.
    step_offsets = tf.constant(np.array([(step + 1) * _GOLDEN % (1 << 64) for step in range(list_size)], np.uint64))
    highest = tf.gather(lengths, owner)[:, None] - list_size + tf.range(list_size, dtype=tf.int64)  # j
    draws = tf.cast(_mix64(key[:, None] + step_offsets) % tf.cast(highest + 1, tf.uint64), tf.int64)  # t

    def take(step: tf.Tensor, picked: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        draw = tf.gather(draws, step, axis=1)
        taken = tf.reduce_any(tf.equal(picked, draw[:, None]), axis=1)
        pick = tf.where(taken, tf.gather(highest, step, axis=1), draw)
        return step + 1, tf.where(tf.range(list_size) == step, pick[:, None], picked)

    unpicked = tf.fill(tf.shape(draws), tf.constant(-1, tf.int64))  # never equal to a draw
    _, picked = tf.while_loop(lambda step, _: step < list_size, take, (0, unpicked), parallel_iterations=1)
    # Floyd's picks are a uniform set but not in uniform order: shuffle each list by a hash of its picks.
    shuffle_keys = _to_unit_interval(_mix64(tf.bitwise.bitwise_xor(key[:, None], tf.cast(picked, tf.uint64))))
    picked = tf.gather(picked, tf.argsort(shuffle_keys, axis=1), batch_dims=1)
    positions = tf.gather(starts, owner)[:, None] + picked
    return (
        {"user_id": list_users, "movie_id": tf.gather(movies, positions)},
        _labels(tf.gather(ratings, positions)),
    )


def from_memory(tensors: Any, batch_size: int | None = None) -> tf.data.Dataset:
    """A dataset slicing in-memory tensors (a nest of dense or ragged tensors of equal first dimension).

    ``batch_size=None`` gives one row per element, an int batches of that many rows (the last one smaller). No
    per-row tf.data work: dense tensors are reshaped into whole batches and sliced by tf.data in C++. tf.data's
    default graph rewrites are turned off for the dataset: with them, each new iterator copied the tensors. Autotuning
    is off too, which saves an idle wait at the end of many iterations; a caller who adds
    ``map(..., num_parallel_calls=tf.data.AUTOTUNE)`` can turn it back on with ``with_options``.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1, or None for one row per element")
    flat = tf.nest.flatten(tensors)
    ragged = any(isinstance(t, tf.RaggedTensor) for t in flat)
    if batch_size is None:
        dataset = tf.data.Dataset.from_tensor_slices(tensors)
        if ragged:  # the identity map turns rows of ragged tensors (ragged specs of rank 1) into plain tensors
            dataset = dataset.map(plain(lambda *row: row if len(row) > 1 else row[0]))
        return with_rows_in_memory(dataset.with_options(_IN_MEMORY_OPTIONS), tensors)
    if ragged or flat[0].shape[0] is None:  # the row count is unknown only inside a tf.function
        dataset = tf.data.Dataset.from_tensors(tensors).rebatch(batch_size)
    else:
        rows = int(flat[0].shape[0])
        # A batch larger than the rows would slice an empty [0, batch_size, ...] tensor, which crashes TensorFlow
        # when batch_size is huge: one batch of every row is the same dataset.
        batch_size = min(batch_size, max(rows, 1))
        whole = rows - rows % batch_size

        def batches(t: tf.Tensor) -> tf.Tensor:
            return tf.reshape(t[:whole], [whole // batch_size, batch_size, *t.shape[1:]])

        dataset = tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(batches, tensors))
        if whole < rows:
            rest = tf.data.Dataset.from_tensors(tf.nest.map_structure(lambda t: t[whole:], tensors))
            dataset = dataset.concatenate(rest)
    return dataset.with_options(_IN_MEMORY_OPTIONS)


def _check_fits(features: dict[str, tf.Tensor], labels: tf.Tensor, pad_to: int) -> tuple[dict, tf.Tensor]:
    check = tf.debugging.assert_less_equal(
        tf.size(labels), pad_to, message=f"a list is longer than pad_to={pad_to}; raise pad_to or shorten the lists"
    )
    with tf.control_dependencies([check]):
        return features, tf.identity(labels)
