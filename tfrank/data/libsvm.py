"""LETOR/LibSVM ranking data: text lines ``<label> qid:<id> <index>:<value> ...`` -> ``(features, labels)`` lists.

The format of MSLR-WEB10K/30K, Yahoo LTR and Istella, and of TF Ranking's ``train.txt`` examples. Consecutive lines
with the same ``qid`` form one list. Parsed in tf.data (blocks of lines, vectorised per block), never line by line
in Python.

    batches = tfrank.data.read_libsvm("train.txt", num_features=136, list_size=10)
    features, labels = next(iter(batches))   # features["1"] ... features["136"]: [32, 10, 1]; labels: [32, 10]

Features are named as TF Ranking's LibSVM example reader (``tfr.data.libsvm_generator``) names them: "1" ...
"num_features", each float32 [batch, list, 1], 0 where a line does not give the feature; the same names and shapes
as the numerical ELWC examples, so one model reads both. ``dense_feature_name="features"`` gives one float32 tensor
[batch, list, num_features] instead. A feature given twice on a line keeps its last value (as TF Ranking's parser,
a dict update, does). Text after ``#`` (LETOR's ``#docid = ...``) and blank lines are ignored.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from tfrank.data._tfdata import plain
from tfrank.data.elwc import _check_list_size
from tfrank.data.movielens import _assert_lines_ok
from tfrank.data.streaming import _numbered_line_batches
from tfrank.ops import PADDING_LABEL

_NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
_LINE_FORM = "'<label> qid:<id> <index>:<value> ...'"


def _parse_lines(numbers: tf.Tensor, lines: tf.Tensor, path: str, num_features: int
                 ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:  # fmt: skip
    """A block of numbered lines -> (qids string [R], labels float32 [R], features float32 [R, num_features]).

    Raises InvalidArgumentError naming ``path`` and the first bad line: no ``qid:``, a non-numeric label or value,
    a feature index outside 1..num_features.
    """
    content = tf.strings.strip(tf.strings.regex_replace(lines, "#.*", ""))
    keep = content != ""
    numbers, lines, content = (tf.boolean_mask(tensor, keep) for tensor in (numbers, lines, content))
    tokens = tf.strings.split(content)
    has_qid = (tokens.row_lengths() >= 2) & tf.strings.regex_full_match(
        tokens[:, 1:2].to_tensor("", shape=[None, 1])[:, 0], r"qid:\S+")
    label_ok = tf.strings.regex_full_match(tokens[:, :1].to_tensor("", shape=[None, 1])[:, 0], _NUMBER)
    pairs = tokens[:, 2:]
    pair_ok = tf.strings.regex_full_match(pairs, r"\d+:" + _NUMBER)
    numeric = label_ok & tf.reduce_all(pair_ok, axis=1)
    checks = [
        _assert_lines_ok(has_qid, numbers, lines, path, _LINE_FORM + " with a qid:<id> second"),
        _assert_lines_ok(numeric, numbers, lines, path, _LINE_FORM + " with numbers as label, index and value"),
    ]
    with tf.control_dependencies(checks):
        pairs = tf.identity(pairs)
    indices = tf.strings.to_number(tf.strings.regex_replace(pairs.flat_values, ":.*", ""), tf.int64)
    values = tf.strings.to_number(tf.strings.regex_replace(pairs.flat_values, "^[^:]*:", ""), tf.float32)
    out_of_range = tf.cast((indices < 1) | (indices > num_features), tf.int32)
    # An empty segment (a line without features) gives int32's minimum: no index out of range.
    in_range = tf.math.unsorted_segment_max(out_of_range, pairs.value_rowids(), pairs.nrows()) <= 0
    checks.append(_assert_lines_ok(
        in_range, numbers, lines, path,
        f"feature indices in 1..{num_features} (num_features={num_features}; pass the largest index in the file)",
    ))  # fmt: skip
    with tf.control_dependencies(checks):
        rows = tf.identity(pairs.value_rowids())
        label_tokens, qids = tf.identity(tokens[:, :1].flat_values), tf.identity(tokens[:, 1:2].flat_values)
    # A feature given twice on a line keeps its last value: only each (line, index)'s last token is scattered.
    cells = rows * num_features + tf.clip_by_value(indices, 1, num_features) - 1
    num_cells = tf.size(lines, out_type=tf.int64) * num_features
    positions = tf.range(tf.size(cells, out_type=tf.int64))
    last = tf.gather(tf.math.unsorted_segment_max(positions, cells, num_cells), cells) == positions
    features = tf.scatter_nd(tf.boolean_mask(cells, last)[:, tf.newaxis], tf.boolean_mask(values, last),
                             [num_cells])  # fmt: skip
    return qids, tf.strings.to_number(label_tokens, tf.float32), tf.reshape(features, [-1, num_features])


def _complete_lists(state: tuple[tf.Tensor, tf.Tensor, tf.Tensor], element: tuple[Any, ...]) -> tuple[Any, Any]:
    """Joins the rows carried over from earlier blocks with this block's and emits the lists that are complete:
    all but the last run of equal qids, which the next block may continue (all of them at the end)."""
    qids, labels, features, is_end = element
    qids, labels, features = (tf.concat([before, now], axis=0) for before, now in zip(state, (qids, labels, features)))
    starts = tf.concat([tf.ones([tf.minimum(tf.size(qids), 1)], tf.bool), qids[1:] != qids[:-1]], axis=0)
    start_rows = tf.where(starts)[:, 0]
    last_start = tf.cond(is_end | (tf.size(start_rows) == 0), lambda: tf.size(qids, out_type=tf.int64),
                         lambda: start_rows[-1])  # fmt: skip
    list_ids = tf.cumsum(tf.cast(starts[:last_start], tf.int64)) - 1
    num_lists = tf.reduce_sum(tf.cast(starts[:last_start], tf.int64))
    row_lengths = tf.math.bincount(list_ids, minlength=num_lists, maxlength=num_lists, dtype=tf.int64)
    emitted = (
        tf.RaggedTensor.from_row_lengths(labels[:last_start], row_lengths),
        tf.RaggedTensor.from_row_lengths(features[:last_start], row_lengths),
    )
    return (qids[last_start:], labels[last_start:], features[last_start:]), emitted


def read_libsvm(path: str | os.PathLike, num_features: int, list_size: int | None = None, batch_size: int = 32,
                shuffle: bool = False, shuffle_buffer_size: int = 10_000, shuffle_examples: bool = False,
                seed: int = 0, dense_feature_name: str | None = None, drop_remainder: bool = False
                ) -> tf.data.Dataset:  # fmt: skip
    """A dataset of batches ``(features, labels)`` of the lists (consecutive lines of one ``qid``) in ``path``.

    Args:
      num_features: the largest feature index; indices run 1..num_features (136 for MSLR-WEB, 220 for Istella).
      list_size: None: features RaggedTensors [batch, None, 1] and labels [batch, None]. An int: each list cut to
        its first ``list_size`` lines or padded to it, padded items with label ``PADDING_LABEL`` (-1) and
        features 0.
      shuffle: shuffle the lists (a ``shuffle_buffer_size`` buffer) seeded by ``seed``.
      shuffle_examples: shuffle the items of each list (seeded) before cutting it to ``list_size``; TF Ranking's
        ``libsvm_generator`` always shuffles them, here the file order is kept unless asked.
      dense_feature_name: None: features "1" ... "num_features", each [batch, list, 1]. A name: one tensor
        [batch, list, num_features] under that name.
      drop_remainder: drop the last batch when it has fewer than ``batch_size`` lists.

    Raises:
      ValueError: a bad argument. FileNotFoundError: no file ``path``. Iterating raises InvalidArgumentError
      naming the file and line of a line without ``qid:``, with a non-numeric label or value, or with a feature
      index outside 1..num_features.
    """
    _check_list_size(list_size)
    if not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"num_features={num_features!r}: must be an int >= 1, the largest feature index")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path={path!r} is not a file: give a LibSVM/LETOR text file")

    blocks = _numbered_line_batches(path, header=False).map(
        plain(lambda numbers, lines: (*_parse_lines(numbers, lines, path, num_features), False)))
    end = tf.data.Dataset.from_tensors(
        (tf.zeros([0], tf.string), tf.zeros([0]), tf.zeros([0, num_features]), True))
    empty = (tf.zeros([0], tf.string), tf.zeros([0]), tf.zeros([0, num_features]))
    lists = blocks.concatenate(end).scan(empty, plain(_complete_lists)).unbatch()
    if shuffle:
        lists = lists.shuffle(shuffle_buffer_size, seed=seed)
    if shuffle_examples:
        lists = lists.enumerate().map(plain(lambda number, items: _shuffled(items, seed, number)))
    if list_size is not None:
        lists = lists.map(plain(lambda labels, features: (labels[:list_size], features[:list_size])))
        batches = lists.padded_batch(batch_size, padded_shapes=([list_size], [list_size, num_features]),
                                     padding_values=(PADDING_LABEL, 0.0), drop_remainder=drop_remainder)  # fmt: skip
    else:
        batches = lists.ragged_batch(batch_size, drop_remainder=drop_remainder)
    return batches.map(plain(lambda labels, features: (_named(features, num_features, dense_feature_name), labels)),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)  # fmt: skip


def _shuffled(items: tuple[tf.Tensor, tf.Tensor], seed: int, number: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    labels, features = items
    keys = tf.random.stateless_uniform(tf.shape(labels), seed=tf.stack([tf.constant(seed, tf.int64), number]))
    order = tf.argsort(keys)
    return tf.gather(labels, order), tf.gather(features, order)


def _named(features: Any, num_features: int, dense_feature_name: str | None) -> dict[str, Any]:
    """[batch, list, num_features] -> {"1": [batch, list, 1], ...}, or {dense_feature_name: features}."""
    if dense_feature_name is not None:
        return {dense_feature_name: features}
    if isinstance(features, tf.RaggedTensor):
        columns = tf.split(features.flat_values, num_features, axis=-1)
        return {str(index + 1): features.with_flat_values(column) for index, column in enumerate(columns)}
    return {str(index + 1): column for index, column in enumerate(tf.split(features, num_features, axis=-1))}
