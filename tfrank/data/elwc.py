"""ELWC ranking data: TFRecord files of ``tensorflow.serving.ExampleListWithContext`` -> ``(features, labels)`` lists.

ELWC is TF Ranking's on-disk and serving format: one record per list, a context ``tf.train.Example`` (query
features) and one ``tf.train.Example`` per list item. Records are parsed in-graph with standard ops
(``tf.io.decode_proto`` with an embedded descriptor, then ``tf.io.parse_example``), so neither
``tensorflow-serving-api`` nor TF Ranking is needed, and :func:`parse_elwc` also runs inside a SavedModel's serving
signature.

    spec = {f"custom_features_{i}": tf.io.FixedLenFeature([1], tf.float32, default_value=0.0) for i in range(1, 137)}
    batches = tfrank.data.read_elwc("train_numerical_elwc.tfrecord", {}, spec, list_size=10, label_key="utility")
    features, labels = next(iter(batches))   # features["custom_features_1"]: [32, 10, 1]; labels: [32, 10]

Lists follow TF Ranking's ``tfr.data.parse_from_example_list``: with ``list_size`` the first ``list_size`` items of a
longer list are kept (after an optional seeded shuffle of its items, ``shuffle_examples``) and shorter lists are
padded; without it lists are ragged. Padded items carry ``PADDING_LABEL`` whatever the label's ``default_value``.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import descriptor_pb2

from tfrank.data._tfdata import plain
from tfrank.ops import PADDING_LABEL

ELWC_MESSAGE = "tensorflow.serving.ExampleListWithContext"
# TF Ranking's examples store the relevance grade of each item as an int64 feature of this name.
DEFAULT_LABEL_KEY = "relevance"
_DEFAULT_LABEL_SPEC = tf.io.FixedLenFeature([1], tf.int64, default_value=[int(PADDING_LABEL)])

FeatureSpec = Mapping[str, Any]  # name -> tf.io.FixedLenFeature | tf.io.VarLenFeature | tf.io.RaggedFeature


@functools.cache
def elwc_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """The ``FileDescriptorSet`` of ``tensorflow.serving.ExampleListWithContext`` and the ``tf.train.Example`` it holds.

    Built from the message's definition in ``tensorflow_serving/apis/input.proto``::

        message ExampleListWithContext {
          repeated tensorflow.Example examples = 1;
          tensorflow.Example context = 2;
        }

    with ``tensorflow/core/example/{feature,example}.proto`` taken from TensorFlow's own descriptors.
    """
    from tensorflow.core.example import example_pb2, feature_pb2

    descriptors = descriptor_pb2.FileDescriptorSet()
    for module in (feature_pb2, example_pb2):
        module.DESCRIPTOR.CopyToProto(descriptors.file.add())
    input_proto = descriptors.file.add(
        name="tensorflow_serving/apis/input.proto", package="tensorflow.serving", syntax="proto3"
    )
    input_proto.dependency.append("tensorflow/core/example/example.proto")
    message = input_proto.message_type.add(name="ExampleListWithContext")
    field = descriptor_pb2.FieldDescriptorProto
    message.field.add(name="examples", number=1, label=field.LABEL_REPEATED, type=field.TYPE_MESSAGE,
                      type_name=".tensorflow.Example")  # fmt: skip
    message.field.add(name="context", number=2, label=field.LABEL_OPTIONAL, type=field.TYPE_MESSAGE,
                      type_name=".tensorflow.Example")  # fmt: skip
    return descriptors


@functools.cache
def _descriptor_source() -> bytes:
    return b"bytes://" + elwc_descriptor_set().SerializeToString()


def _split_label_spec(example_feature_spec: FeatureSpec, label_key: str) -> tuple[dict[str, Any], Any]:
    """``example_feature_spec`` without the label, and the label's spec (TF Ranking's int64 default when absent)."""
    spec = dict(example_feature_spec)
    label_spec = spec.pop(label_key, _DEFAULT_LABEL_SPEC)
    if not isinstance(label_spec, tf.io.FixedLenFeature) or tuple(label_spec.shape) not in ((), (1,)):
        raise ValueError(f"example_feature_spec[{label_key!r}]={label_spec}: the label must be a "
                         "tf.io.FixedLenFeature of shape [] or [1], e.g. tf.io.FixedLenFeature([1], tf.int64, "
                         "default_value=-1)")  # fmt: skip
    if not spec:
        raise ValueError(f"example_feature_spec={dict(example_feature_spec)}: name at least one per-item feature "
                         "besides the label, e.g. {'1': tf.io.FixedLenFeature([1], tf.float32, default_value=0.0)}")
    for name, feature in spec.items():
        if not isinstance(feature, (tf.io.FixedLenFeature, tf.io.VarLenFeature, tf.io.RaggedFeature)):
            raise ValueError(f"example_feature_spec[{name!r}]={feature}: use tf.io.FixedLenFeature, "
                             "tf.io.VarLenFeature or tf.io.RaggedFeature")  # fmt: skip
    return spec, label_spec


def _decode(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``serialized`` ELWC [B] -> (serialized contexts [B], serialized items [B, max list size], list sizes [B])."""
    sizes, (contexts, items) = tf.io.decode_proto(
        serialized, ELWC_MESSAGE, ["context", "examples"], [tf.string, tf.string],
        descriptor_source=_descriptor_source(),
    )  # fmt: skip
    # A record without context decodes to an empty one, which parses to the context spec's defaults.
    return tf.reshape(contexts, [-1]), items, sizes[:, 1]


def _parse_flat(serialized: tf.Tensor, context_feature_spec: FeatureSpec, example_spec: dict[str, Any],
                label_key: str, label_spec: Any) -> tuple[dict, dict, tf.Tensor, tf.Tensor]:  # fmt: skip
    """Parses ``serialized`` [B]: context features [B, ...], item features and labels of all items [N, ...] in list
    order, and list sizes [B] (int64)."""
    contexts, items, list_sizes = _decode(serialized)
    list_sizes = tf.cast(list_sizes, tf.int64)
    flat_items = tf.RaggedTensor.from_tensor(items, lengths=list_sizes).flat_values
    parsed = tf.io.parse_example(flat_items, {**example_spec, label_key: label_spec})
    labels = tf.cast(tf.reshape(parsed.pop(label_key), [-1]), tf.float32)
    context = tf.io.parse_example(contexts, dict(context_feature_spec)) if context_feature_spec else {}
    return context, parsed, labels, list_sizes


def _shuffle_within_lists(list_sizes: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Indices [N] of the N items that permute each list's items at random (stateless, ``seed`` [2]) and keep
    the lists in order."""
    list_ids = tf.repeat(tf.range(tf.size(list_sizes, out_type=tf.int64)), list_sizes)
    keys = tf.random.stateless_uniform(tf.shape(list_ids), seed=seed)
    by_key = tf.argsort(keys)
    by_list = tf.argsort(tf.gather(list_ids, by_key), stable=True)
    return tf.cast(tf.gather(by_key, by_list), tf.int64)


def _padding_values(feature: tf.io.FixedLenFeature, width: int) -> np.ndarray:
    """The [width] values of one padded item of a dense feature: its spec's default value, else 0 (or b"")."""
    dtype = object if feature.dtype == tf.string else feature.dtype.as_numpy_dtype
    if feature.default_value is None:
        return np.full([width], b"" if feature.dtype == tf.string else 0, dtype)
    default = np.asarray(feature.default_value, dtype).reshape([-1])
    return np.broadcast_to(default, [width]) if default.size == 1 else default


def _padded_dense_features(items: dict[str, tf.Tensor], example_spec: dict[str, Any], item_index: tf.Tensor
                           ) -> dict[str, tf.Tensor]:  # fmt: skip
    """The dense features of all items [N, ...] as lists [B, list_size, ...] at ``item_index``, padded with
    ``_padding_values``. Features of one dtype and shape are gathered as one table: with a hundred features or
    more, per-feature ops make the parse function slow to build."""
    groups: dict[tuple, list[str]] = {}
    for name, feature in example_spec.items():
        if isinstance(feature, tf.io.FixedLenFeature):
            groups.setdefault((feature.dtype, tuple(feature.shape)), []).append(name)
    lists = {}
    for (dtype, shape), names in groups.items():
        width = int(np.prod(shape, dtype=np.int64))
        columns = [items[name] if tuple(items[name].shape[1:]) == (width,) else tf.reshape(items[name], [-1, width])
                   for name in names]  # fmt: skip
        padding = np.concatenate([_padding_values(example_spec[name], width) for name in names])[np.newaxis, :]
        table = tf.concat([tf.concat(columns, axis=1), tf.constant(padding, dtype)], axis=0)
        parts = tf.split(tf.gather(table, item_index), [width] * len(names), axis=-1)
        for name, part in zip(names, parts):
            if shape == ():
                part = tf.squeeze(part, axis=-1)
            elif shape != (width,):
                part = tf.reshape(part, tf.concat([tf.shape(item_index), shape], axis=0))
            lists[name] = part
    return lists


def _to_lists(flat: Any, row_splits: tf.Tensor, item_index: tf.Tensor | None, list_size: int | None,
              feature: Any) -> Any:  # fmt: skip
    """One item feature from all items [N, ...] to lists: ragged [B, None, ...] without ``list_size``; with it
    (VarLen and Ragged features only) [B, list_size, None], VarLen ones as a SparseTensor."""
    if isinstance(flat, tf.SparseTensor):
        flat = tf.RaggedTensor.from_sparse(flat)
    if isinstance(flat, tf.RaggedTensor):  # RaggedFeature's splits are int32 by default; the list splits int64
        flat = flat.with_row_splits_dtype(tf.int64)
    if list_size is None:
        # The splits come from the decoded list sizes, so they fit every feature: checking them per feature
        # would only add ops.
        return tf.RaggedTensor.from_row_splits(flat, row_splits, validate=False)
    if isinstance(flat, tf.RaggedTensor):
        empty = tf.RaggedTensor.from_row_lengths(tf.zeros([0], flat.dtype), tf.zeros([1], flat.row_splits.dtype))
        lists = tf.gather(tf.concat([flat, empty], axis=0), item_index)
        return lists.to_sparse() if isinstance(feature, tf.io.VarLenFeature) else lists
    raise TypeError(f"{feature}: dense features are padded by _padded_dense_features")


def _item_index(list_sizes: tf.Tensor, list_size: int, order: tf.Tensor | None) -> tf.Tensor:
    """Index [B, list_size] of each list position in the items [N]: the first ``list_size`` items of each list (in
    ``order`` when given), N (one past the items: the padding row) at padded positions."""
    starts = tf.cumsum(list_sizes, exclusive=True)
    positions = tf.range(list_size, dtype=tf.int64)[tf.newaxis, :]
    valid = positions < list_sizes[:, tf.newaxis]
    num_items = tf.reduce_sum(list_sizes)
    index = tf.where(valid, starts[:, tf.newaxis] + positions, num_items)
    if order is not None:
        index = tf.where(valid, tf.gather(tf.concat([order, [num_items]], axis=0), index), num_items)
    return index


def _parse_lists(serialized: tf.Tensor, context_feature_spec: FeatureSpec, example_feature_spec: FeatureSpec,
                 list_size: int | None, label_key: str, shuffle_examples: bool, seed: tf.Tensor
                 ) -> tuple[dict[str, Any], Any]:  # fmt: skip
    example_spec, label_spec = _split_label_spec(example_feature_spec, label_key)
    serialized = tf.reshape(tf.convert_to_tensor(serialized, tf.string), [-1])
    context, items, labels, list_sizes = _parse_flat(serialized, context_feature_spec, example_spec, label_key,
                                                     label_spec)  # fmt: skip
    order = _shuffle_within_lists(list_sizes, seed) if shuffle_examples else None
    if list_size is None:
        if order is not None:
            items = {name: _gather_items(values, order) for name, values in items.items()}
            labels = tf.gather(labels, order)
        row_splits = tf.concat([[0], tf.cumsum(list_sizes)], axis=0)
        features = {name: _to_lists(values, row_splits, None, None, example_spec[name])
                    for name, values in items.items()}  # fmt: skip
        return {**context, **features}, tf.RaggedTensor.from_row_splits(labels, row_splits, validate=False)
    index = _item_index(list_sizes, list_size, order)
    features = _padded_dense_features(items, example_spec, index)
    features.update({name: _to_lists(values, None, index, list_size, example_spec[name])
                     for name, values in items.items() if name not in features})  # fmt: skip
    padded_labels = tf.gather(tf.concat([labels, [PADDING_LABEL]], axis=0), index)
    return {**context, **features}, padded_labels


def _gather_items(values: Any, order: tf.Tensor) -> Any:
    if isinstance(values, tf.SparseTensor):
        values = tf.RaggedTensor.from_sparse(values)
    return tf.gather(values, order)


def _check_list_size(list_size: int | None) -> None:
    if list_size is not None and (not isinstance(list_size, int) or list_size < 1):
        raise ValueError(f"list_size={list_size!r}: must be an int >= 1, or None for ragged lists")


def parse_elwc(serialized: Any, context_feature_spec: FeatureSpec | None, example_feature_spec: FeatureSpec,
               list_size: int | None = None, label_key: str = DEFAULT_LABEL_KEY, shuffle_examples: bool = False,
               seed: int = 0) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """Parses a batch of serialized ELWC protos [B] into ``(features, labels)``; works in graph mode and SavedModels.

    Args:
      serialized: string tensor [B] (or a scalar) of serialized ``tensorflow.serving.ExampleListWithContext``.
      context_feature_spec: name -> ``tf.io`` feature spec of the context (query) features, or None/{}.
      example_feature_spec: name -> ``tf.io`` feature spec of the per-item features; it may hold the label.
      list_size: None: item features are RaggedTensors [B, None, ...] (VarLen and Ragged ones [B, None, None])
        and labels [B, None]. An int: lists are cut to their first ``list_size`` items or padded to it; dense item
        features are [B, list_size, ...] (padded with the spec's ``default_value``, else 0; a FixedLenFeature
        without default is fine), VarLen ones SparseTensors [B, list_size, None], Ragged ones RaggedTensors
        [B, list_size, None], and labels [B, list_size] with ``PADDING_LABEL`` (-1) at padded items.
      label_key: the item feature holding the relevance label; its spec is taken from ``example_feature_spec``,
        else ``tf.io.FixedLenFeature([1], tf.int64, default_value=-1)``. Labels are float32; an item without the
        label gets the spec's default (-1 by default: an invalid item).
      shuffle_examples: shuffle the items of each list (seeded by ``seed``) before cutting to ``list_size``.
      seed: seed of ``shuffle_examples``.

    Returns:
      ``(features, labels)``: context features [B, ...] (as ``tf.io.parse_example`` gives them) and item features
      under their names, and the labels.
    """
    _check_list_size(list_size)
    return _parse_lists(serialized, context_feature_spec or {}, example_feature_spec, list_size, label_key,
                        shuffle_examples, tf.constant([seed, 0], tf.int64))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# TFRecord files.

_TFRECORD_HEADER = struct.Struct("<QI")  # record length, masked CRC of the length


def _count_records(path: str) -> int:
    """The number of records in TFRecord file ``path``; ValueError naming the file and record if one is truncated.

    Reads only the 12-byte header of each record and seeks past its data: TFRecordDataset's own error for a
    truncated file names neither the file nor the record.
    """
    size = os.path.getsize(path)
    count, offset = 0, 0
    with open(path, "rb") as records:
        while offset < size:
            header = records.read(_TFRECORD_HEADER.size)
            length = _TFRECORD_HEADER.unpack(header)[0] if len(header) == _TFRECORD_HEADER.size else None
            end = offset + _TFRECORD_HEADER.size + (length or 0) + 4
            if length is None or end > size:
                raise ValueError(f"Truncated TFRecord file {path}: record {count} (counting from 0) at byte {offset} "
                                 f"needs {end - offset} bytes, the file has {size - offset} left. Re-copy or "
                                 "re-write the file.")  # fmt: skip
            records.seek(length + 4, os.SEEK_CUR)
            count, offset = count + 1, end
    return count


def _list_files(file_pattern: str | Sequence[str]) -> list[str]:
    patterns = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else list(file_pattern)
    files = sorted({name for pattern in patterns for name in tf.io.gfile.glob(os.fspath(pattern))})
    if not files:
        raise FileNotFoundError(f"file_pattern={file_pattern!r} matches no file: give TFRecord files of ELWC protos")
    return files


def _checked_records(path: tf.Tensor, count: tf.Tensor, context_feature_spec: FeatureSpec,
                     example_feature_spec: FeatureSpec, label_key: str) -> tf.data.Dataset:  # fmt: skip
    """The records of ``path``; an InvalidArgumentError naming the file and record if one does not parse.

    Each record is parsed alone and records that fail are dropped (``ignore_errors``); the record numbers that
    come through are then checked to be 0, 1, ..., count - 1, so the first dropped one is named. The batches are
    parsed again by ``parse_elwc``: parsing twice keeps one parse for training and serving.
    """
    example_spec, label_spec = _split_label_spec(example_feature_spec, label_key)
    label_values = {label_key: tf.io.VarLenFeature(label_spec.dtype)}  # counts the labels present

    def parsed_number(number: tf.Tensor, record: tf.Tensor) -> tuple[tf.Tensor, ...]:
        context, items, labels, _ = _parse_flat(tf.reshape(record, [1]), context_feature_spec, example_spec,
                                                label_key, label_spec)  # fmt: skip
        # The parsed values go out (as their total size) so that the parse is not pruned as unused.
        parsed = [labels] + tf.nest.flatten((context, items), expand_composites=True)
        _, serialized_items, _ = _decode(tf.reshape(record, [1]))
        present = tf.io.parse_example(tf.reshape(serialized_items, [-1]), label_values)[label_key]
        has_label = tf.size(present.values) > 0
        return number, record, tf.add_n([tf.size(value, out_type=tf.int64) for value in parsed]), has_label

    end = tf.data.Dataset.from_tensors((count, tf.constant(b""), tf.constant(0, tf.int64), tf.constant(False)))
    numbered = tf.data.TFRecordDataset(path).enumerate().map(plain(parsed_number)).ignore_errors().concatenate(end)

    def check_next(state: tuple[tf.Tensor, tf.Tensor], element: tuple[tf.Tensor, ...]):
        expected, any_label = state
        number, record, _, has_label = element
        message = tf.strings.join([
            "Bad ELWC record in ", path, ": record ", tf.strings.as_string(expected), " (counting from 0) is not a "
            f"{ELWC_MESSAGE} whose features match context_feature_spec and example_feature_spec (wrong message "
            "type, feature dtype or shape, missing feature without default_value, or corrupted). Fix the spec or "
            "the record.",
        ])  # fmt: skip
        ok = tf.debugging.Assert(tf.equal(number, expected), [message], summarize=1)
        # A wrong label_key would silently make every item invalid (label -1): no item of the file has the label.
        no_label = tf.strings.join([
            "No item in ", path, f" has the label feature `{label_key}`: every item would be padding (label -1). "
            "Pass label_key= the name of the label feature of the items (TF Ranking numerical examples: `utility`).",
        ])  # fmt: skip
        labelled = tf.debugging.Assert((number < count) | any_label | (count == 0), [no_label], summarize=1)
        with tf.control_dependencies([ok, labelled]):
            return (number + 1, any_label | has_label), (tf.identity(number), record)

    checked = numbered.scan((tf.constant(0, tf.int64), tf.constant(False)), plain(check_next))
    return checked.filter(plain(lambda number, record: number < count)).map(plain(lambda number, record: record))


def read_elwc(file_pattern: str | Sequence[str], context_feature_spec: FeatureSpec | None,
              example_feature_spec: FeatureSpec, list_size: int | None = None, label_key: str = DEFAULT_LABEL_KEY,
              batch_size: int = 32, shuffle: bool = False, shuffle_buffer_size: int = 10_000,
              shuffle_examples: bool = False, seed: int = 0, drop_remainder: bool = False,
              check_records: bool = True) -> tf.data.Dataset:  # fmt: skip
    """A dataset of batches ``(features, labels)`` of the ELWC lists in TFRecord files ``file_pattern``.

    TF Ranking's ``tfr.data.build_ranking_dataset(..., data_format=tfr.data.ELWC)`` with one pass over the files
    (repeat it for more), files in name order, and the batches of :func:`parse_elwc` (see there for ``list_size``,
    ``label_key``, ``shuffle_examples``).

    Args:
      file_pattern: a glob pattern or a list of them (``tf.io.gfile.glob``).
      shuffle: shuffle the files and the lists (a ``shuffle_buffer_size`` buffer), seeded by ``seed``.
      drop_remainder: drop the last batch when it has fewer than ``batch_size`` lists.
      check_records: name the file and record of a record that does not parse (each record is parsed once more
        on its own for it). False: records are not checked, and such a record stops iteration with the parse op's
        error, which names neither.

    The record headers of each file are read once here (seeking past the records) to find a truncated file.

    Raises:
      FileNotFoundError: no file matches. ValueError: a truncated file (named, with its record), a bad argument.
      Iterating raises InvalidArgumentError naming the file and record of a record that is not an ELWC matching
      the specs.
    """
    _check_list_size(list_size)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    context_feature_spec = dict(context_feature_spec or {})
    _split_label_spec(example_feature_spec, label_key)  # argument errors now, not at iteration
    files = _list_files(file_pattern)
    counts = [_count_records(path) for path in files]
    sources = tf.data.Dataset.from_tensor_slices((files, tf.constant(counts, tf.int64)))
    if shuffle:
        sources = sources.shuffle(len(files), seed=seed)
    if check_records:
        read = plain(lambda path, count: _checked_records(path, count, context_feature_spec, example_feature_spec,
                                                          label_key))  # fmt: skip
    else:
        read = plain(lambda path, count: tf.data.TFRecordDataset(path))
    records = sources.interleave(read, cycle_length=1)
    if shuffle:
        records = records.shuffle(shuffle_buffer_size, seed=seed)

    def parse(batch_number: tf.Tensor, serialized: tf.Tensor) -> tuple[dict[str, Any], Any]:
        return _parse_lists(serialized, context_feature_spec, example_feature_spec, list_size, label_key,
                            shuffle_examples, tf.stack([tf.constant(seed, tf.int64), batch_number]))  # fmt: skip

    batches = records.batch(batch_size, drop_remainder=drop_remainder).enumerate()
    return batches.map(plain(parse), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------------------------
# Writing.

FeatureValues = Any  # a scalar or a sequence of int, float, str or bytes (or a numpy array of them)
# One list: its context features (or None) and the features of each of its items.
ListFeatures = tuple[Mapping[str, FeatureValues] | None, Sequence[Mapping[str, FeatureValues]]]


@functools.cache
def elwc_message_class() -> type:
    """The protobuf message class of ``tensorflow.serving.ExampleListWithContext``, from :func:`elwc_descriptor_set`."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    for file_proto in elwc_descriptor_set().file:
        pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(ELWC_MESSAGE))


def _fill_features(example: Any, features: Mapping[str, FeatureValues]) -> None:
    """Sets ``example.features`` from ``features``: float, int64 or bytes list by the values' numpy kind."""
    for name, values in features.items():
        array = np.asarray(values).reshape([-1])
        feature = example.features.feature[name]
        if array.dtype.kind == "f":
            feature.float_list.value.extend(array.astype(np.float32).tolist())
        elif array.dtype.kind in "iub":
            feature.int64_list.value.extend(array.astype(np.int64).tolist())
        elif array.dtype.kind in "SUO":
            feature.bytes_list.value.extend(value.encode() if isinstance(value, str) else bytes(value)
                                            for value in array.tolist())  # fmt: skip
        else:
            raise ValueError(f"feature {name!r}={values!r}: values must be numbers, str or bytes")


def serialize_elwc(context: Mapping[str, FeatureValues] | None, items: Sequence[Mapping[str, FeatureValues]]) -> bytes:
    """One serialized ELWC: ``context`` features and one ``tf.train.Example`` per item of ``items``.

    Floats become ``float_list``, ints and bools ``int64_list``, str and bytes ``bytes_list``; a scalar is a list
    of one value.
    """
    message = elwc_message_class()()
    if context:
        _fill_features(message.context, context)
    for item in items:
        _fill_features(message.examples.add(), item)
    return message.SerializeToString()


def write_elwc(path: str | os.PathLike, lists: Iterable[ListFeatures]) -> int:
    """Writes ``lists`` of ``(context features, [item features, ...])`` to TFRecord file ``path`` as ELWC protos,
    one record per list (see :func:`serialize_elwc`); returns the number of lists. :func:`read_elwc` reads them.

        tfrank.data.write_elwc("lists.tfrecord", [({"query_id": 7}, [{"1": 0.5, "relevance": 2}, {"1": 0.1}])])
    """
    count = 0
    with tf.io.TFRecordWriter(os.fspath(path)) as writer:
        for context, items in lists:
            writer.write(serialize_elwc(context, items))
            count += 1
    return count
