"""tfrank.data.elwc and tfrank.data.libsvm on TF Ranking's own example files, checked against independent decodes:
protobuf's parser (and a hand-written wire-format walk) for ELWC, plain Python for LibSVM text."""

import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pool, message_factory

import tfrank.data
from tfrank.data import elwc, streaming

DATA = pathlib.Path(__file__).resolve().parent / "data" / "tf-ranking-examples"
NUMERICAL_ELWC = DATA / "vali_numerical_elwc.tfrecord"
TEXT_ELWC = DATA / "train_elwc.tfrecord"
LIBSVM = DATA / "vali.txt"
NUM_FEATURES = 136
NUMERICAL_SPEC = {f"custom_features_{i}": tf.io.FixedLenFeature([1], tf.float32, default_value=0.0)
                  for i in range(1, NUM_FEATURES + 1)}  # fmt: skip
TEXT_CONTEXT_SPEC = {"query_tokens": tf.io.VarLenFeature(tf.string)}
TEXT_EXAMPLE_SPEC = {"document_tokens": tf.io.VarLenFeature(tf.string)}


# ---------------------------------------------------------------------------------------------------------------
# Independent decodes.


def _elwc_class():
    pool = descriptor_pool.DescriptorPool()
    for file_proto in elwc.elwc_descriptor_set().file:
        pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(elwc.ELWC_MESSAGE))


def _records(path) -> list[bytes]:
    return list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())


def _protos(path) -> list:
    message = _elwc_class()
    return [message.FromString(record) for record in _records(path)]


def _values(feature) -> list:
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def _wire_fields(data: bytes) -> list[tuple[int, bytes]]:
    """(field number, bytes) of each length-delimited field of a serialized message, read by hand."""
    fields, at = [], 0
    while at < len(data):
        key, at = _varint(data, at)
        assert key & 7 == 2, "ELWC has only length-delimited fields"
        length, at = _varint(data, at)
        fields.append((key >> 3, data[at:at + length]))
        at += length
    return fields


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value, shift, at = value | (byte & 0x7F) << shift, shift + 7, at + 1
        if byte < 0x80:
            return value, at


def _libsvm_lists(path) -> list[tuple[list[float], list[dict[int, float]]]]:
    """(labels, items as {index: value}) of each run of equal qids, parsed in plain Python; last value wins."""
    lists, previous = [], None
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        label, qid, *pairs = line.split()
        if qid != previous:
            lists.append(([], []))
            previous = qid
        lists[-1][0].append(float(label))
        lists[-1][1].append({int(index): float(value) for index, value in (pair.split(":") for pair in pairs)})
    return lists


def _all(dataset) -> tuple[dict, object]:
    """All batches of ``dataset`` joined along the list axis: (features, labels) as numpy (ragged as lists)."""
    batches = list(dataset)
    features = {name: _concat([batch[0][name] for batch in batches]) for name in batches[0][0]}
    labels = tf.concat([batch[1] for batch in batches], axis=0)
    return features, labels


def _concat(parts: list):
    if isinstance(parts[0], tf.SparseTensor):
        return tf.sparse.concat(0, parts, expand_nonconcat_dims=True)
    return tf.concat(parts, axis=0)


# ---------------------------------------------------------------------------------------------------------------
# ELWC.


def test_elwc_descriptor_has_the_wire_fields_of_a_real_record():
    record = _records(TEXT_ELWC)[0]
    fields = _wire_fields(record)
    proto = _elwc_class().FromString(record)
    assert [number for number, _ in fields] == [1, 1, 2]

    def canonical(data: bytes) -> bytes:  # map entries may be written in any order
        return tf.train.Example.FromString(data).SerializeToString(deterministic=True)

    items = [item.SerializeToString(deterministic=True) for item in proto.examples]
    assert items == [canonical(data) for number, data in fields if number == 1]
    assert proto.context.SerializeToString(deterministic=True) == canonical(fields[2][1])
    assert _values(proto.context.features.feature["query_tokens"]) == [b"this", b"is", b"a", b"relevant", b"question"]


def test_read_elwc_ragged_gives_every_feature_value_and_label_of_the_protos():
    features, labels = _all(tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC, label_key="utility",
                                                  batch_size=4))  # fmt: skip
    protos = _protos(NUMERICAL_ELWC)
    assert len(protos) == 9 and labels.shape[0] == 9
    assert isinstance(labels, tf.RaggedTensor)
    assert labels.to_list() == [[_values(item.features.feature["utility"])[0] for item in proto.examples]
                                for proto in protos]  # fmt: skip
    for name in NUMERICAL_SPEC:
        expected = [[_values(item.features.feature[name]) or [0.0] for item in proto.examples] for proto in protos]
        got = features[name].to_list()
        assert [len(row) for row in got] == [len(row) for row in expected]
        for got_row, expected_row in zip(got, expected):
            np.testing.assert_array_equal(np.array(got_row, np.float32), np.array(expected_row, np.float32), name)


def test_read_elwc_padded_cuts_long_lists_to_their_first_items_and_pads_short_ones_with_label_minus_one():
    list_size = 3
    dataset = tfrank.data.read_elwc(str(NUMERICAL_ELWC), {}, NUMERICAL_SPEC, list_size=list_size,
                                    label_key="utility", batch_size=4)  # fmt: skip
    assert dataset.element_spec[1].shape.as_list() == [None, list_size]
    assert dataset.element_spec[0]["custom_features_7"].shape.as_list() == [None, list_size, 1]
    features, labels = _all(dataset)
    protos = _protos(NUMERICAL_ELWC)
    sizes = [len(proto.examples) for proto in protos]
    assert min(sizes) < list_size < max(sizes)  # the file has both cases
    for row, proto in enumerate(protos):
        items = list(proto.examples)[:list_size]
        padding = list_size - len(items)
        expected_labels = [_values(item.features.feature["utility"])[0] for item in items] + [-1.0] * padding
        assert labels[row].numpy().tolist() == expected_labels
        for name in ("custom_features_1", "custom_features_84", "custom_features_136"):
            expected = [(_values(item.features.feature[name]) or [0.0])[0] for item in items] + [0.0] * padding
            np.testing.assert_array_equal(features[name][row, :, 0].numpy(), np.array(expected, np.float32))


def test_padded_items_get_label_minus_one_even_when_the_label_default_is_zero():
    spec = {**NUMERICAL_SPEC, "utility": tf.io.FixedLenFeature([1], tf.int64, default_value=0)}
    features, labels = tfrank.data.parse_elwc(_records(NUMERICAL_ELWC)[:2], None, spec, list_size=6,
                                              label_key="utility")  # fmt: skip
    sizes = [len(proto.examples) for proto in _protos(NUMERICAL_ELWC)[:2]]
    for row, size in enumerate(sizes):
        assert labels[row, size:].numpy().tolist() == [-1.0] * (6 - size)


def test_text_elwc_gives_context_and_item_tokens_of_the_protos_padded_as_sparse_and_ragged():
    protos = _protos(TEXT_ELWC)
    ragged, ragged_labels = _all(tfrank.data.read_elwc(str(TEXT_ELWC), TEXT_CONTEXT_SPEC, TEXT_EXAMPLE_SPEC,
                                                       batch_size=3))  # fmt: skip
    padded = list(tfrank.data.read_elwc(str(TEXT_ELWC), TEXT_CONTEXT_SPEC, TEXT_EXAMPLE_SPEC, list_size=3,
                                        batch_size=10))  # fmt: skip
    assert len(padded) == 1
    padded_features, padded_labels = padded[0]
    tokens = padded_features["document_tokens"]
    assert isinstance(tokens, tf.SparseTensor) and tokens.dense_shape.numpy().tolist()[:2] == [10, 3]
    dense_tokens = tf.sparse.to_dense(tokens).numpy()
    query = tf.sparse.to_dense(padded_features["query_tokens"]).numpy()
    ragged_tokens, ragged_labels = ragged["document_tokens"].to_list(), ragged_labels.to_list()
    for row, proto in enumerate(protos):
        expected = [_values(item.features.feature["document_tokens"]) for item in proto.examples]
        assert ragged_tokens[row] == expected
        assert ragged_labels[row] == [_values(i.features.feature["relevance"])[0]
                                                       for i in proto.examples]  # fmt: skip
        for position, item_tokens in enumerate(expected):
            assert [token for token in dense_tokens[row, position] if token] == item_tokens
        assert not dense_tokens[row, len(expected):].any()
        assert padded_labels[row].numpy().tolist()[len(expected):] == [-1.0] * (3 - len(expected))
        query_tokens = _values(proto.context.features.feature["query_tokens"])
        assert [token for token in query[row] if token] == query_tokens


def test_parse_elwc_in_a_tf_function_equals_eager_parsing():
    records = _records(NUMERICAL_ELWC)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(serialized):
        return tfrank.data.parse_elwc(serialized, None, NUMERICAL_SPEC, list_size=5, label_key="utility")

    graph_features, graph_labels = serve(tf.constant(records))
    eager_features, eager_labels = tfrank.data.parse_elwc(records, None, NUMERICAL_SPEC, list_size=5,
                                                          label_key="utility")  # fmt: skip
    np.testing.assert_array_equal(graph_labels.numpy(), eager_labels.numpy())
    for name in NUMERICAL_SPEC:
        np.testing.assert_array_equal(graph_features[name].numpy(), eager_features[name].numpy())
    assert graph_labels.shape == (9, 5)


def test_read_elwc_iterated_inside_a_tf_function_sums_the_labels_of_the_protos():
    dataset = tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC, list_size=4, label_key="utility",
                                    batch_size=2)  # fmt: skip

    @tf.function
    def total_label():
        total = tf.constant(0.0)
        for _, labels in dataset:
            total += tf.reduce_sum(tf.maximum(labels, 0.0))
        return total

    expected = sum(_values(item.features.feature["utility"])[0]
                   for proto in _protos(NUMERICAL_ELWC) for item in list(proto.examples)[:4])  # fmt: skip
    assert total_label().numpy() == expected


def test_shuffle_examples_permutes_items_within_lists_the_same_way_for_the_same_seed():
    def read(seed):
        return _all(tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC, label_key="utility",
                                          shuffle_examples=True, seed=seed))  # fmt: skip

    (features, labels), (again, _), (other, _) = read(1), read(1), read(2)
    plain_features, plain_labels = _all(tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC,
                                                              label_key="utility"))  # fmt: skip
    name = "custom_features_84"
    assert features[name].to_list() == again[name].to_list()
    assert features[name].to_list() != other[name].to_list()
    assert features[name].to_list() != plain_features[name].to_list()
    rows = zip(features[name].to_list(), labels.to_list(), plain_features[name].to_list(), plain_labels.to_list())
    for shuffled, shuffled_labels, in_file, in_file_labels in rows:
        assert sorted(shuffled) == sorted(in_file)
        assert sorted(zip(shuffled, shuffled_labels)) == sorted(zip(in_file, in_file_labels))  # labels move along


def test_read_elwc_without_record_checks_gives_the_same_batches():
    checked = _all(tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC, list_size=4,
                                         label_key="utility"))  # fmt: skip
    unchecked = _all(tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC, list_size=4,
                                           label_key="utility", check_records=False))  # fmt: skip
    np.testing.assert_array_equal(checked[1].numpy(), unchecked[1].numpy())


def test_read_elwc_reads_files_of_a_pattern_in_name_order(tmp_path):
    for name in ("b.tfrecord", "a.tfrecord"):
        shutil.copy(NUMERICAL_ELWC, tmp_path / name)
    _, labels = _all(tfrank.data.read_elwc(str(tmp_path / "*.tfrecord"), None, NUMERICAL_SPEC, label_key="utility"))
    assert labels.shape[0] == 18
    assert labels[:9].to_list() == labels[9:].to_list()


# Bad ELWC input.


def _write_records(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def test_truncated_tfrecord_file_is_an_error_naming_the_file_and_record(tmp_path):
    data = NUMERICAL_ELWC.read_bytes()
    path = tmp_path / "cut.tfrecord"
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"Truncated TFRecord file .*cut\.tfrecord: record 8 \(counting from 0\)"):
        tfrank.data.read_elwc(str(path), None, NUMERICAL_SPEC, label_key="utility")


@pytest.mark.parametrize("position", [3, 9])
def test_record_that_is_not_elwc_is_an_error_naming_the_file_and_record(tmp_path, position):
    records = _records(NUMERICAL_ELWC)
    records.insert(position, b"\xffnot a protocol buffer")
    path = _write_records(tmp_path / "garbage.tfrecord", records)
    dataset = tfrank.data.read_elwc(path, None, NUMERICAL_SPEC, label_key="utility", batch_size=2)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"Bad ELWC record in .*garbage\.tfrecord: record {position} \(counting from 0\)"):
        list(dataset)


def test_tf_example_in_place_of_an_elwc_is_an_error_naming_the_record(tmp_path):
    example = tf.train.Example(features=tf.train.Features(feature={
        "custom_features_1": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))}))
    records = _records(NUMERICAL_ELWC)[:2] + [example.SerializeToString()]
    path = _write_records(tmp_path / "example.tfrecord", records)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"example\.tfrecord: record 2 "):
        list(tfrank.data.read_elwc(path, None, NUMERICAL_SPEC, label_key="utility"))


def test_feature_of_another_dtype_than_the_spec_is_an_error_naming_the_record():
    spec = {**NUMERICAL_SPEC, "custom_features_1": tf.io.FixedLenFeature([1], tf.int64, default_value=0)}
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"vali_numerical_elwc\.tfrecord: record \d+ .*spec"):
        list(tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, spec, label_key="utility"))


def test_bad_arguments_are_errors_naming_the_argument():
    with pytest.raises(ValueError, match="list_size=0"):
        tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC, list_size=0)
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        tfrank.data.read_elwc(str(DATA / "nothing-here*"), None, NUMERICAL_SPEC)
    with pytest.raises(ValueError, match="label must be a tf.io.FixedLenFeature"):
        tfrank.data.parse_elwc([b""], None, {"relevance": tf.io.VarLenFeature(tf.int64), "x": NUMERICAL_SPEC[
            "custom_features_1"]})  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# LibSVM.


def test_read_libsvm_ragged_gives_every_value_of_a_plain_python_parse():
    features, labels = _all(tfrank.data.read_libsvm(LIBSVM, NUM_FEATURES, batch_size=4))
    expected = _libsvm_lists(LIBSVM)
    assert labels.to_list() == [list_labels for list_labels, _ in expected]
    assert set(features) == {str(index) for index in range(1, NUM_FEATURES + 1)}
    for index in range(1, NUM_FEATURES + 1):
        column = [[[items.get(index, 0.0)] for items in list_items] for _, list_items in expected]
        got = features[str(index)].to_list()
        np.testing.assert_array_equal(np.concatenate([np.ravel(row) for row in got]).astype(np.float32),
                                      np.concatenate([np.ravel(row) for row in column]).astype(np.float32))
        assert [len(row) for row in got] == [len(row) for row in column]


def test_a_feature_given_twice_on_a_line_keeps_its_last_value():
    first_line = LIBSVM.read_text().splitlines()[0]
    assert " 2:-0.713251 2:0.498115 " in first_line
    features, _ = next(iter(tfrank.data.read_libsvm(LIBSVM, NUM_FEATURES)))
    assert features["2"][0, 0, 0].numpy() == np.float32(0.498115)


def test_read_libsvm_padded_cuts_to_first_lines_and_pads_with_label_minus_one_as_one_dense_tensor():
    list_size = 3
    dataset = tfrank.data.read_libsvm(LIBSVM, NUM_FEATURES, list_size=list_size, batch_size=4,
                                      dense_feature_name="features")  # fmt: skip
    assert dataset.element_spec[0]["features"].shape.as_list() == [None, list_size, NUM_FEATURES]
    features, labels = _all(dataset)
    expected = _libsvm_lists(LIBSVM)
    assert min(len(list_labels) for list_labels, _ in expected) < list_size
    for row, (list_labels, list_items) in enumerate(expected):
        padding = list_size - len(list_labels[:list_size])
        assert labels[row].numpy().tolist() == list_labels[:list_size] + [-1.0] * padding
        dense = np.zeros([list_size, NUM_FEATURES], np.float32)
        for position, items in enumerate(list_items[:list_size]):
            for index, value in items.items():
                dense[position, index - 1] = value
        np.testing.assert_array_equal(features["features"][row].numpy(), dense)


def test_libsvm_and_numerical_elwc_of_the_same_lists_read_equal():
    libsvm_features, libsvm_labels = _all(tfrank.data.read_libsvm(LIBSVM, NUM_FEATURES, list_size=6))
    elwc_features, elwc_labels = _all(tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC, list_size=6,
                                                            label_key="utility"))  # fmt: skip
    np.testing.assert_array_equal(libsvm_labels.numpy(), elwc_labels.numpy())
    for index in range(1, NUM_FEATURES + 1):
        np.testing.assert_array_equal(libsvm_features[str(index)].numpy(),
                                      elwc_features[f"custom_features_{index}"].numpy())  # fmt: skip


def test_lists_that_span_blocks_of_the_file_are_joined(monkeypatch, tmp_path):
    # Blocks smaller than a line: every list spans several blocks.
    monkeypatch.setattr(streaming, "_BLOCK_BYTES", 100)
    _, labels = _all(tfrank.data.read_libsvm(LIBSVM, NUM_FEATURES, batch_size=5))
    assert labels.to_list() == [list_labels for list_labels, _ in _libsvm_lists(LIBSVM)]


def test_comments_blank_lines_and_a_qid_that_comes_back_later(tmp_path):
    path = tmp_path / "letor.txt"
    path.write_text("2 qid:10 1:0.5 3:1.5 #docid = a\n\n0 qid:10 2:2\n1 qid:11 1:1\n# a comment line\n3 qid:10 3:7")
    features, labels = _all(tfrank.data.read_libsvm(path, 3, dense_feature_name="x"))
    assert labels.to_list() == [[2.0, 0.0], [1.0], [3.0]]
    assert features["x"].to_list() == [[[0.5, 0.0, 1.5], [0.0, 2.0, 0.0]], [[1.0, 0.0, 0.0]], [[0.0, 0.0, 7.0]]]


def test_read_libsvm_iterated_inside_a_tf_function_sums_the_labels():
    dataset = tfrank.data.read_libsvm(LIBSVM, NUM_FEATURES, list_size=4, batch_size=3)

    @tf.function
    def total_label():
        total = tf.constant(0.0)
        for _, labels in dataset:
            total += tf.reduce_sum(tf.maximum(labels, 0.0))
        return total

    expected = sum(sum(list_labels[:4]) for list_labels, _ in _libsvm_lists(LIBSVM))
    assert total_label().numpy() == pytest.approx(expected)


def test_shuffle_examples_in_libsvm_is_seeded_and_keeps_each_list_items():
    def labels_of(seed):
        return _all(tfrank.data.read_libsvm(LIBSVM, NUM_FEATURES, shuffle_examples=True, seed=seed))[1].to_list()

    first, again = labels_of(3), labels_of(3)
    in_file = [list_labels for list_labels, _ in _libsvm_lists(LIBSVM)]
    assert first == again
    assert first != in_file
    assert [sorted(row) for row in first] == [sorted(row) for row in in_file]


# Bad LibSVM input: the error names the file and the line (numbered from 1).


@pytest.mark.parametrize("bad_line, expected", [
    ("1 1:0.5 2:0.25", "qid"),
    ("1 qid:2 0:0.5", "feature indices in 1..136"),
    ("1 qid:2 137:0.5", "feature indices in 1..136"),
    ("1 qid:2 3:abc", "numbers"),
    ("high qid:2 3:0.5", "numbers"),
])  # fmt: skip
def test_bad_libsvm_line_is_an_error_naming_the_file_and_line(tmp_path, bad_line, expected):
    lines = LIBSVM.read_text().splitlines()
    lines.insert(6, bad_line)
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"bad\.txt: line 7 is {bad_line}; expected .*{expected}"):
        list(tfrank.data.read_libsvm(path, NUM_FEATURES))


def test_bad_libsvm_arguments_are_errors_naming_the_argument(tmp_path):
    with pytest.raises(ValueError, match="num_features=0"):
        tfrank.data.read_libsvm(LIBSVM, 0)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        tfrank.data.read_libsvm(tmp_path / "missing.txt", 3)


# ---------------------------------------------------------------------------------------------------------------
# Writing ELWC.


def test_write_elwc_round_trips_the_lists_of_a_real_file(tmp_path):
    lists = []
    for proto in _protos(NUMERICAL_ELWC):
        items = [{name: _values(feature) for name, feature in item.features.feature.items()}
                 for item in proto.examples]  # fmt: skip
        lists.append((None, items))
    path = tmp_path / "written.tfrecord"
    assert tfrank.data.write_elwc(path, lists) == 9
    written = _all(tfrank.data.read_elwc(str(path), None, NUMERICAL_SPEC, list_size=7, label_key="utility"))
    original = _all(tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC, list_size=7,
                                          label_key="utility"))  # fmt: skip
    np.testing.assert_array_equal(written[1].numpy(), original[1].numpy())
    for name in NUMERICAL_SPEC:
        np.testing.assert_array_equal(written[0][name].numpy(), original[0][name].numpy())


def test_write_elwc_keeps_context_text_ints_and_floats(tmp_path):
    path = tmp_path / "mixed.tfrecord"
    tfrank.data.write_elwc(path, [
        ({"query": ["learning", "to", "rank"], "query_id": 7}, [{"score": [0.5, 1.5], "relevance": 2},
                                                                {"score": [2.0, 0.0], "relevance": 0}]),
        (None, [{"score": [1.0, 1.0], "relevance": 1}]),
    ])  # fmt: skip
    proto = _protos(path)[0]
    assert _values(proto.context.features.feature["query"]) == [b"learning", b"to", b"rank"]
    assert proto.context.features.feature["query_id"].WhichOneof("kind") == "int64_list"
    features, labels = next(iter(tfrank.data.read_elwc(
        str(path), {"query": tf.io.VarLenFeature(tf.string), "query_id": tf.io.FixedLenFeature([1], tf.int64, [-1])},
        {"score": tf.io.FixedLenFeature([2], tf.float32)}, list_size=2)))  # fmt: skip
    assert labels.numpy().tolist() == [[2.0, 0.0], [1.0, -1.0]]
    assert features["score"].numpy().tolist() == [[[0.5, 1.5], [2.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]]
    assert features["query_id"].numpy().tolist() == [[7], [-1]]
    assert tf.sparse.to_dense(features["query"]).numpy().tolist()[0] == [b"learning", b"to", b"rank"]


def test_parse_elwc_pads_scalar_matrix_and_ragged_item_features_by_their_spec():
    records = [
        elwc.serialize_elwc(None, [{"x": 1.5, "grid": [1, 2, 3, 4], "tags": ["a", "b"], "relevance": 1}] * 2),
        elwc.serialize_elwc(None, [{"x": 2.5, "grid": [5, 6, 7, 8], "tags": ["c"], "relevance": 3}]),
    ]
    spec = {
        "x": tf.io.FixedLenFeature([], tf.float32, default_value=-7.0),
        "grid": tf.io.FixedLenFeature([2, 2], tf.int64),
        "tags": tf.io.RaggedFeature(tf.string),
    }
    features, labels = tfrank.data.parse_elwc(records, None, spec, list_size=3)
    assert labels.numpy().tolist() == [[1.0, 1.0, -1.0], [3.0, -1.0, -1.0]]
    assert features["x"].numpy().tolist() == [[1.5, 1.5, -7.0], [2.5, -7.0, -7.0]]
    assert features["grid"].numpy().tolist() == [[[[1, 2], [3, 4]]] * 2 + [[[0, 0], [0, 0]]],
                                                 [[[5, 6], [7, 8]]] + [[[0, 0], [0, 0]]] * 2]  # fmt: skip
    assert features["tags"].to_list() == [[[b"a", b"b"], [b"a", b"b"], []], [[b"c"], [], []]]
    ragged, ragged_labels = tfrank.data.parse_elwc(records, None, spec)
    assert ragged_labels.to_list() == [[1.0, 1.0], [3.0]]
    assert ragged["x"].to_list() == [[1.5, 1.5], [2.5]]
    assert ragged["tags"].to_list() == [[[b"a", b"b"], [b"a", b"b"]], [[b"c"]]]


def test_shuffled_reading_gives_the_same_lists_in_a_seeded_order():
    def read(seed):
        _, labels = _all(tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC, label_key="utility",
                                               shuffle=True, seed=seed, batch_size=2))  # fmt: skip
        return labels.to_list()

    in_file = [[_values(item.features.feature["utility"])[0] for item in proto.examples]
               for proto in _protos(NUMERICAL_ELWC)]  # fmt: skip
    first = read(5)
    assert first == read(5)
    assert first != in_file and sorted(first) == sorted(in_file)
    libsvm = _all(tfrank.data.read_libsvm(LIBSVM, NUM_FEATURES, shuffle=True, seed=5))[1].to_list()
    assert libsvm != in_file and sorted(libsvm) == sorted(in_file)


def test_label_key_that_no_item_has_is_an_error_naming_the_file_and_the_fix():
    # TF Ranking's numerical examples call the label "utility": the default "relevance" would make every item -1.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"No item in .*vali_numerical_elwc\.tfrecord has the "
                                                             r"label feature `relevance`.*label_key="):  # fmt: skip
        list(tfrank.data.read_elwc(str(NUMERICAL_ELWC), None, NUMERICAL_SPEC))


def test_parse_elwc_runs_in_a_reloaded_saved_model_signature(tmp_path):
    spec = {name: NUMERICAL_SPEC[name] for name in ("custom_features_1", "custom_features_84")}
    module = tf.Module()
    module.parse = tf.function(
        lambda serialized: tfrank.data.parse_elwc(serialized, None, spec, list_size=4, label_key="utility")[1],
        input_signature=[tf.TensorSpec([None], tf.string)],
    )  # fmt: skip
    tf.saved_model.save(module, str(tmp_path / "parser"), signatures={"serving_default": module.parse})
    records = _records(NUMERICAL_ELWC)
    reloaded = tf.saved_model.load(str(tmp_path / "parser"))
    served = reloaded.signatures["serving_default"](tf.constant(records))
    expected = tfrank.data.parse_elwc(records, None, spec, list_size=4, label_key="utility")[1]
    np.testing.assert_array_equal(list(served.values())[0].numpy(), expected.numpy())
