"""Tests for tfrank.export: TF Serving layout, signatures, self-contained graphs, and serving outside Python.

The C API and saved_model_cli tests load the export the way TF Serving does (a graph-mode session from the SavedModel
loader), so they catch state that only Python's `tf.saved_model.load` would restore.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfrank import _processes, export
from tfrank.models import RankingModel
from tfrank.ops import PADDING_ID, PADDING_SCORE

C_SOURCE = pathlib.Path(__file__).resolve().parent / "c" / "serve_saved_model.c"
USERS = list(range(1, 51))
MOVIES = [409, 237, 131, 941, 543] + list(range(1, 100))
# Batch of two lists: user 42's five movies, and a short list with an unseen movie (12345) padded to five.
USER_IDS = np.array([42, 7], np.int64)
MOVIE_IDS = np.array([[409, 237, 131, 941, 543], [12345, 3, PADDING_ID, PADDING_ID, PADDING_ID]], np.int64)
_QUIET_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
# (user_id, movie_id, what the error says) for inputs that serving_default must reject rather than score.
_BAD_INPUTS = [
    (
        [42],
        [[409, 237], [131, 941], [543, 3]],
        r"user_id shape \[1\], movie_id shape \[3, 2\]: pass one user_id per list",
    ),
    ([42, 7, 3], [409, 237, 131], r"user_id shape \[3\], movie_id shape \[3\]: movie_id must be a matrix"),
    ([42], [[[409, 237]]], r"user_id shape \[1\], movie_id shape \[1, 1, 2\]: movie_id must be a matrix"),
]


def _model(seed: int = 0) -> RankingModel:
    """A small model with weights large enough that different inputs give clearly different scores."""
    model = RankingModel(USERS, MOVIES, embedding_dim=8)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype("float32"))
    return model


def _example(user_id: int, movie_ids: list[int]) -> bytes:
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "user_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[user_id])),
                "movie_id": tf.train.Feature(int64_list=tf.train.Int64List(value=movie_ids)),
            }
        )
    ).SerializeToString()


def _meta_graph(version_dir: str):
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(pathlib.Path(version_dir, "saved_model.pb").read_bytes())
    (meta_graph,) = saved_model.meta_graphs
    return meta_graph


@pytest.fixture(scope="module")
def model() -> RankingModel:
    return _model()


@pytest.fixture(scope="module")
def python_scores(model) -> np.ndarray:
    return model({"user_id": tf.constant(USER_IDS), "movie_id": tf.constant(MOVIE_IDS)}).numpy()


@pytest.fixture(scope="module")
def version_dir(model, tmp_path_factory) -> str:
    return export.export_saved_model(model, str(tmp_path_factory.mktemp("export")))


@pytest.fixture(scope="module")
def loaded(version_dir):
    return tf.saved_model.load(version_dir)


@pytest.fixture(scope="module")
def serve_binary(tmp_path_factory) -> pathlib.Path:
    """serve_saved_model.c compiled and linked against the TF C API shipped in the tensorflow wheel."""
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.fail("gcc is not on PATH: the C API serving test needs it (apt-get install gcc)")
    lib_dir = tf.sysconfig.get_lib()
    binary = tmp_path_factory.mktemp("c") / "serve_saved_model"
    command = [compiler, "-std=c11", "-Wall", "-Werror", "-O1", f"-I{tf.sysconfig.get_include()}", str(C_SOURCE)]
    command += ["-o", str(binary), f"-L{lib_dir}", "-l:libtensorflow_cc.so.2", "-l:libtensorflow_framework.so.2"]
    command += [f"-Wl,-rpath,{lib_dir}"]
    if shutil.which("ld.gold"):
        command.append("-fuse-ld=gold")  # links the large libtensorflow_cc several times faster than ld.bfd
    subprocess.run(command, check=True, capture_output=True, text=True)
    return binary


# --- layout and versions ---------------------------------------------------------------------------------------------


def test_versions_start_at_1_and_increment(model, tmp_path):
    first = export.export_saved_model(model, str(tmp_path))
    second = export.export_saved_model(model, str(tmp_path))
    assert (first, second) == (str(tmp_path / "1"), str(tmp_path / "2"))
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]  # no .tmp-* folder left behind
    assert {"saved_model.pb", "variables"} <= set(os.listdir(second))
    assert export.list_versions(str(tmp_path)) == [1, 2]
    assert export.version_path(str(tmp_path)) == second


def test_explicit_version_is_used_and_the_next_one_follows_it(model, tmp_path):
    (tmp_path / "not-a-version").mkdir()
    (tmp_path / ".tmp-3-stale").mkdir()
    assert export.export_saved_model(model, str(tmp_path), version=7) == str(tmp_path / "7")
    assert export.export_saved_model(model, str(tmp_path)) == str(tmp_path / "8")


def _tmp_folder_name(version: int, host: str, pid: int) -> str:
    return f".tmp-{version}-{host}-{pid}-{'0' * 32}"


def test_export_removes_tmp_folders_of_dead_exporters_on_this_host_only(model, tmp_path):
    dead_pid = 2**22 + 1  # above Linux's largest possible pid_max, so no process has it
    host = _processes.host_id()
    stale = _tmp_folder_name(1, host, dead_pid)
    live = _tmp_folder_name(1, host, os.getpid())  # a concurrent export in this very process
    other_host = _tmp_folder_name(1, f"not-{host}", dead_pid)
    unknown_naming = ".tmp-1-0123abcd"
    for name in (stale, live, other_host, unknown_naming):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"half written")
    assert export.export_saved_model(model, str(tmp_path)) == str(tmp_path / "1")
    assert sorted(os.listdir(tmp_path)) == sorted(["1", live, other_host, unknown_naming])


def test_tmp_folder_name_carries_host_and_pid_and_is_never_an_integer(model, tmp_path, monkeypatch):
    names = []

    def record_and_crash(obj, path, signatures=None):
        names.append(os.path.basename(path))
        raise RuntimeError("killed")

    monkeypatch.setattr(tf.saved_model, "save", record_and_crash)
    with pytest.raises(RuntimeError, match="killed"):
        export.export_saved_model(model, str(tmp_path))
    (name,) = names
    match = export._TMP_PATTERN.match(name)
    assert match and match["host"] == _processes.host_id() and int(match["pid"]) == os.getpid()
    assert name.startswith(".tmp-1-") and not name.isdigit()


def test_existing_version_is_never_overwritten(model, tmp_path):
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path / "3")) + ".*version=None"):
        export.export_saved_model(model, str(tmp_path), version=3)
    assert (tmp_path / "3" / "keep.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["3"]


def test_failed_export_leaves_neither_version_nor_tmp_folder(model, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(model, str(tmp_path))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("version", [0, -1, "2", 1.0])
def test_bad_version_is_rejected(model, tmp_path, version):
    with pytest.raises(ValueError, match="version="):
        export.export_saved_model(model, str(tmp_path), version=version)


def test_zero_padded_version_folder_counts_as_its_number(model, tmp_path):
    (tmp_path / "007").mkdir()
    assert export.version_path(str(tmp_path)) == str(tmp_path / "007")
    with pytest.raises(FileExistsError, match="007"):
        export.export_saved_model(model, str(tmp_path), version=7)


def test_version_path_without_versions_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no version folders"):
        export.version_path(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no version 4"):
        export.version_path(str(tmp_path), 4)


# --- signatures ------------------------------------------------------------------------------------------------------


def test_signatures_have_the_documented_names_dtypes_and_shapes(version_dir):
    signatures = _meta_graph(version_dir).signature_def

    def spec(tensor_info):
        return tf.dtypes.as_dtype(tensor_info.dtype), [dim.size for dim in tensor_info.tensor_shape.dim]

    serving = signatures["serving_default"]
    assert {name: spec(info) for name, info in serving.inputs.items()} == {
        "user_id": (tf.int64, [-1]),
        "movie_id": (tf.int64, [-1, -1]),
    }
    assert {name: spec(info) for name, info in serving.outputs.items()} == {"scores": (tf.float32, [-1, -1])}
    assert serving.method_name == "tensorflow/serving/predict"

    examples = signatures["tf_example"]
    assert {name: spec(info) for name, info in examples.inputs.items()} == {"serialized": (tf.string, [-1])}
    assert {name: spec(info) for name, info in examples.outputs.items()} == {"scores": (tf.float32, [-1, -1])}


def test_serving_default_gives_the_model_scores(loaded, python_scores):
    scores = loaded.signatures["serving_default"](user_id=tf.constant(USER_IDS), movie_id=tf.constant(MOVIE_IDS))
    np.testing.assert_allclose(scores["scores"].numpy(), python_scores, rtol=1e-6, atol=1e-6)
    assert np.all(scores["scores"].numpy()[1, 2:] == PADDING_SCORE)
    assert np.isfinite(scores["scores"].numpy()[1, 0])  # unseen movie 12345


def test_tf_example_signature_equals_serving_default(loaded, python_scores):
    serialized = tf.constant([_example(42, [409, 237, 131, 941, 543]), _example(7, [12345, 3])])
    scores = loaded.signatures["tf_example"](serialized=serialized)["scores"].numpy()
    assert scores.shape == (2, 5)  # padded to the longest list
    np.testing.assert_allclose(scores, python_scores, rtol=1e-6, atol=1e-6)


def test_padding_id_in_a_tf_example_scores_as_padding_like_serving_default(loaded):
    user_ids = np.array([42, 7], np.int64)
    movie_ids = np.array([[409, PADDING_ID, 237], [PADDING_ID, 3, PADDING_ID]], np.int64)
    serialized = tf.constant([_example(int(user), row.tolist()) for user, row in zip(user_ids, movie_ids)])
    from_examples = loaded.signatures["tf_example"](serialized=serialized)["scores"].numpy()
    from_tensors = loaded.signatures["serving_default"](user_id=tf.constant(user_ids), movie_id=tf.constant(movie_ids))[
        "scores"
    ].numpy()
    np.testing.assert_allclose(from_examples, from_tensors, rtol=1e-6, atol=1e-6)
    assert np.all(from_examples[movie_ids == PADDING_ID] == PADDING_SCORE)
    assert np.all(from_examples[movie_ids != PADDING_ID] > PADDING_SCORE)


@pytest.mark.parametrize(
    "user_ids, movie_ids, message",
    _BAD_INPUTS + [([[42]], [[409, 237]], r"user_id shape \[1, 1\], movie_id shape \[1, 2\]: user_id must be")],
    ids=["one_user_three_lists", "movie_id_rank1", "movie_id_rank3", "user_id_rank2"],
)
def test_serving_default_rejects_inputs_of_mismatched_shapes_with_their_names(loaded, user_ids, movie_ids, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["serving_default"](
            user_id=tf.constant(user_ids, tf.int64), movie_id=tf.constant(movie_ids, tf.int64)
        )


def test_serving_default_accepts_an_empty_batch(loaded):
    scores = loaded.signatures["serving_default"](user_id=tf.zeros([0], tf.int64), movie_id=tf.zeros([0, 3], tf.int64))[
        "scores"
    ]
    assert scores.shape == (0, 3)


def test_vocabularies_are_saved_with_the_export(version_dir, loaded):
    vocabularies = export.vocabularies(version_dir)
    np.testing.assert_array_equal(vocabularies["user_id"], USERS)
    np.testing.assert_array_equal(vocabularies["movie_id"], MOVIES)
    assert vocabularies["movie_id"].dtype == np.int64
    np.testing.assert_array_equal(export.vocabularies(loaded)["movie_id"], MOVIES)


def test_vocabularies_of_an_export_without_them_name_the_fix():
    with pytest.raises(ValueError, match="no user_vocabulary or movie_vocabulary: export the model again"):
        export.vocabularies(tf.Module())


def test_saved_model_holds_only_standard_ops(version_dir):
    meta_graph = _meta_graph(version_dir)
    op_types = {node.op for node in meta_graph.graph_def.node}
    for function in meta_graph.graph_def.library.function:
        op_types |= {node.op for node in function.node_def}
    assert "LookupTableFindV2" in op_types  # sanity: the function library was scanned
    assert not op_types & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def test_loads_and_serves_in_a_process_that_cannot_import_tfrank(version_dir, python_scores, tmp_path):
    program = f"""
import json, sys
sys.modules["tfrank"] = None  # any attempt to import tfrank now raises ImportError
import tensorflow as tf
loaded = tf.saved_model.load({version_dir!r})
scores = loaded.signatures["serving_default"](
    user_id=tf.constant({USER_IDS.tolist()}, tf.int64), movie_id=tf.constant({MOVIE_IDS.tolist()}, tf.int64))
print(json.dumps(scores["scores"].numpy().tolist()))
print(json.dumps(loaded.movie_vocabulary.numpy().tolist()))
"""
    result = subprocess.run(
        [sys.executable, "-c", program],
        check=False,
        cwd=tmp_path,
        env=_QUIET_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    *_, scores_line, vocabulary_line = result.stdout.strip().splitlines()
    np.testing.assert_allclose(np.array(json.loads(scores_line), np.float32), python_scores, rtol=1e-6, atol=1e-6)
    assert json.loads(vocabulary_line) == MOVIES


# --- serving outside Python ------------------------------------------------------------------------------------------


def _serve_in_c(serve_binary, version_dir, user_ids: np.ndarray, movie_ids: np.ndarray):
    """Runs ``serving_default`` through the C API on ids of any shape; the finished process."""
    serving = _meta_graph(version_dir).signature_def["serving_default"]
    tensor_names = [serving.inputs["user_id"].name, serving.inputs["movie_id"].name, serving.outputs["scores"].name]
    shapes = [",".join(str(dim) for dim in ids.shape) for ids in (user_ids, movie_ids)]
    argv = [str(serve_binary), version_dir, *tensor_names, *shapes]
    argv += [str(value) for value in [*user_ids.reshape(-1), *movie_ids.reshape(-1)]]
    return subprocess.run(argv, check=False, env=_QUIET_ENV, capture_output=True, text=True, timeout=120)


def test_c_api_session_gives_python_scores(version_dir, serve_binary, python_scores):
    result = _serve_in_c(serve_binary, version_dir, USER_IDS, MOVIE_IDS)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = np.array(result.stdout.split(), np.float32).reshape(MOVIE_IDS.shape)
    np.testing.assert_allclose(scores, python_scores, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "user_ids, movie_ids, message", _BAD_INPUTS, ids=["one_user_three_lists", "movie_id_rank1", "movie_id_rank3"]
)
def test_c_api_session_rejects_inputs_of_mismatched_shapes_with_their_names(
    version_dir, serve_binary, user_ids, movie_ids, message
):
    result = _serve_in_c(serve_binary, version_dir, np.array(user_ids), np.array(movie_ids))
    assert result.returncode == 1, result.stdout
    assert re.search(message, result.stderr), result.stderr[-2000:]


def test_saved_model_cli_run_prints_python_scores(version_dir, python_scores):
    cli = pathlib.Path(sys.executable).with_name("saved_model_cli")
    command = [str(cli), "run", "--dir", version_dir, "--tag_set", "serve", "--signature_def", "serving_default"]
    command += ["--input_exprs", f"user_id=[42];movie_id={MOVIE_IDS[:1].tolist()}"]
    result = subprocess.run(command, check=False, env=_QUIET_ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Result for output key scores:" in result.stdout
    printed = result.stdout.split("Result for output key scores:")[1]
    scores = np.array(re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", printed), np.float32)
    np.testing.assert_allclose(scores, python_scores[0], rtol=1e-5, atol=1e-5)


# --- ranking ---------------------------------------------------------------------------------------------------------


def test_rank_movies_orders_best_first(loaded, python_scores):
    ranking = export.rank_movies(loaded, 42, MOVIE_IDS[0].tolist())
    expected_order = MOVIE_IDS[0][np.argsort(-python_scores[0])]
    assert [movie_id for movie_id, _ in ranking] == expected_order.tolist()
    scores = [score for _, score in ranking]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, np.sort(python_scores[0])[::-1], rtol=1e-6)


def test_rank_movies_accepts_a_version_folder(version_dir, python_scores):
    ranking = export.rank_movies(version_dir, 42, [409, 237])
    expected = sorted(zip([409, 237], python_scores[0, :2].tolist()), key=lambda item: -item[1])
    assert [movie_id for movie_id, _ in ranking] == [movie_id for movie_id, _ in expected]
    np.testing.assert_allclose([score for _, score in ranking], [score for _, score in expected], rtol=1e-6)


def test_rank_movies_needs_movies(loaded):
    with pytest.raises(ValueError, match="movie_ids is empty"):
        export.rank_movies(loaded, 42, [])


def test_rank_movies_rejects_negative_ids(loaded):
    with pytest.raises(ValueError, match=r"movie_ids \[-1, -5\] are negative"):
        export.rank_movies(loaded, 42, [409, -1, -5])
