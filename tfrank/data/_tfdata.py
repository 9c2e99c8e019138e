"""tf.data helpers shared by the data modules: one batch size for whole-column work, AutoGraph off, the batched
form of a per-element dataset, and one-line data errors."""

from __future__ import annotations

import re
from typing import Any

import tensorflow as tf

# Rows per batch wherever the data modules move ratings (or file lines) in batches: large enough that tf.data's
# per-element cost is paid rarely, small enough that a batch of parsed lines stays a few MB.
ROWS_PER_BATCH = 1 << 16
# A batch size that holds every row (rating, list or file line) in one batch.
ALL_ROWS = 1 << 62

# The functions given to tf.data here have no tensor-dependent Python control flow: skipping AutoGraph's source
# conversion makes building a pipeline faster.
plain = tf.autograph.experimental.do_not_convert

# A per-element dataset built here remembers a faster form of the same rows, in the same order, so that split and
# sample_lists read whole columns instead of paying tf.data's per-element cost: in-memory tensors (from_memory) or
# a dataset of batches (load_ratings). Any transformation returns a new dataset without it: correct, only slower.
_ROWS_IN_MEMORY = "_tfrank_rows_in_memory"
_BATCHED_FORM = "_tfrank_batched_form"


def with_rows_in_memory(dataset: tf.data.Dataset, tensors: Any) -> tf.data.Dataset:
    """Marks ``dataset`` (one row of ``tensors`` per element) as slicing ``tensors``."""
    setattr(dataset, _ROWS_IN_MEMORY, tensors)
    return dataset


def with_batched_form(dataset: tf.data.Dataset, batches: tf.data.Dataset) -> tf.data.Dataset:
    """Marks ``dataset`` (one row per element) as the unbatching of ``batches``."""
    setattr(dataset, _BATCHED_FORM, batches)
    return dataset


def rows_in_memory(dataset: tf.data.Dataset) -> Any | None:
    """The tensors that ``dataset`` slices row by row, or None when it was not marked so."""
    return getattr(dataset, _ROWS_IN_MEMORY, None)


def batched_form(dataset: tf.data.Dataset) -> tf.data.Dataset | None:
    """``dataset``'s rows in batches, or None when it was not marked with them."""
    return getattr(dataset, _BATCHED_FORM, None)


# What tf.debugging.Assert wraps around a message in the error raised where a dataset is iterated.
_ASSERT_MESSAGE = re.compile(r"assertion failed: \[(.*)\]\s*\[\[\{\{node ", re.DOTALL)


def one_line(error: tf.errors.OpError) -> tf.errors.OpError:
    """``error`` with only the message of the data check that raised it (file, line, fix), when one did.

    The error of a failed ``tf.debugging.Assert`` starts with the function node and the iterator path, and ends
    with the node; callers print the first line of the message, which should be the data's own.
    """
    found = _ASSERT_MESSAGE.search(error.message)
    if found is None:
        return error
    return type(error)(error.node_def, error.op, found.group(1).strip())
