"""SavedModels for TF Serving: versioned, atomic exports with a tensor and a ``tf.Example`` signature.

Layout (TF Serving's): ``<export_dir>/<version>/saved_model.pb`` plus ``variables/``, where ``<version>`` is an
integer folder. Point ``tensorflow_model_server --model_base_path`` at ``export_dir``; it serves the highest version.

Signatures (tag ``serve``):
  - ``serving_default``: ``user_id`` int64 ``[batch]``, ``movie_id`` int64 ``[batch, list_size]`` (short lists padded
    with ``PADDING_ID`` = -1) -> ``scores`` float32 ``[batch, list_size]``.
  - ``tf_example``: ``serialized`` string ``[batch]`` of ``tf.train.Example`` protos, one per user, with int64 features
    ``user_id`` (one value) and ``movie_id`` (any number of values) -> ``scores`` float32 ``[batch, max_list_size]``.
Ids not seen in training get finite scores (the model's out-of-vocabulary row); padded positions (``movie_id`` -1 in
either signature) get ``PADDING_SCORE`` = -1e9. ``serving_default`` fails with an ``InvalidArgumentError`` naming both
inputs and their shapes when they are not ``[batch]`` and ``[batch, list_size]`` with the same batch.

A :class:`tfrank.dnn_models.DNNRankingModel` (the model of TF Ranking's data, ``bin/train.py --dataset=libsvm|elwc``)
is exported with TF Ranking's serving contract instead, the ``predict`` signature of ``tfr.keras.saved_model``:
  - ``serving_default`` and ``tensorflow/serving/predict``: ``inputs`` string ``[batch]`` of serialized
    ``tensorflow.serving.ExampleListWithContext`` protos, one list each, whose items carry the model's float features
    (``feature_names``, one value each; an item without one reads 0) -> ``outputs`` and ``scores`` (the same tensor)
    float32 ``[batch, max_list_size]``, one score per item in the order of the items, ``PADDING_SCORE`` past the end
    of a shorter list. ELWC is parsed in-graph (:func:`tfrank.data.parse_elwc`); context features and other item
    features are ignored. The feature names are saved as the string variable ``feature_names``.
  - ``tensorflow/serving/regress`` (TF Ranking's ``regress``): ``inputs`` string ``[batch]`` of serialized
    ``tf.train.Example`` protos, one item each -> ``outputs`` float32 ``[batch]``, each item's score (the same as in
    a list: items are scored independently).

The training vocabularies are saved as int64 variables ``user_vocabulary`` and ``movie_vocabulary`` (when the model
has them, as ``RankingModel`` does): ``tf.saved_model.load(path).movie_vocabulary.numpy()``, or :func:`vocabularies`.
The SavedModel holds only standard TensorFlow ops and loads without tfrank installed.
"""

import os
import re
import shutil
import uuid
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfrank import _processes, layers
from tfrank.data.elwc import parse_elwc
from tfrank.dnn_models import DNNRankingModel
from tfrank.ops import PADDING_SCORE

SERVING_SIGNATURE = "serving_default"
TF_EXAMPLE_SIGNATURE = "tf_example"
# TF Ranking's names (tfr.keras.saved_model.Signatures' predict): the signature key, its input and its output.
PREDICT_SIGNATURE = "tensorflow/serving/predict"
REGRESS_SIGNATURE = "tensorflow/serving/regress"
ELWC_INPUT = "inputs"
ELWC_OUTPUT = "outputs"
_TMP_PREFIX = ".tmp-"  # TF Serving only loads integer folders, so an export in progress is invisible to it.
# .tmp-<version>-<host>-<pid>-<uuid>: the host and pid tell a later export whether the writer is still alive.
_TMP_PATTERN = re.compile(r"^\.tmp-\d+-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{32}$")
_VERSION_PATTERN = re.compile(r"^\d+$")
_VOCABULARIES = {"user_id": "user_vocabulary", "movie_id": "movie_vocabulary"}


def _lookup_tables(layer: keras.Layer) -> list:
    """The TF resources (e.g. ``tf.lookup.StaticHashTable``) held as attributes by ``layer`` or its sublayers."""
    tables = [
        value for value in vars(layer).values() if isinstance(value, tf.saved_model.experimental.TrackableResource)
    ]
    for sublayer in getattr(layer, "layers", []):
        tables.extend(_lookup_tables(sublayer))
    return tables


def _serving_state(model: keras.Model) -> tf.Module:
    """A module tracking exactly the state that the serving signatures read: variables and lookup tables.

    It tracks the ``tf.Variable`` behind each Keras variable rather than the Keras model: a Keras 3 variable exports as
    a second copy of its ``tf.Variable``, and a graph-mode loader (TF Serving, the C API) would restore that copy while
    the serving functions read the original, failing with "Could not find variable". It holds no ``tf.function``:
    ``tf.saved_model.save`` traces every function an object tracks once more, and the signatures are all that serving
    needs.
    """
    state = tf.Module(name="tfrank_serving")
    state.model_variables = [variable.value for variable in model.variables]
    state.lookup_tables = _lookup_tables(model)
    # Variables rather than a signature: readable with tf.saved_model.load or a checkpoint reader, without tfrank, and
    # invisible to TF Serving's signature list.
    for attribute in _VOCABULARIES.values():
        vocabulary = getattr(model, attribute, None)
        if vocabulary is not None:
            ids = np.asarray(vocabulary, np.int64).reshape(-1)
            setattr(state, attribute, tf.Variable(ids, trainable=False, name=attribute))
    return state


def _has_rank(ids: tf.Tensor, rank: int) -> tf.Tensor:
    """Whether ``ids`` has rank ``rank`` at run time, whatever rank the signature declares.

    ``tf.rank`` would be folded by Grappler into the declared rank, and TF Serving and the C API feed tensors of any
    rank to a signature's input; the entries of the run-time shape, padded with -1s, are not foldable.
    """
    padded = tf.concat([tf.shape(ids, out_type=tf.int64), tf.constant([-1] * (rank + 1), tf.int64)], axis=0)
    return tf.logical_and(padded[rank - 1] >= 0, padded[rank] < 0)


def _shape_text(ids: tf.Tensor) -> tf.Tensor:
    """``ids``'s run-time shape as a string, e.g. "[3, 2]"."""
    dims = tf.strings.reduce_join(tf.strings.as_string(tf.shape(ids, out_type=tf.int64)), separator=", ")
    return tf.strings.join(["[", dims, "]"])


def _check_serving_inputs(user_id: tf.Tensor, movie_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The inputs once they are ``[batch]`` and ``[batch, list_size]``; else an InvalidArgumentError naming both.

    The model would otherwise broadcast a single user id over every list, or fail deep inside with a shape error.
    """
    user_rank_ok, movie_rank_ok = _has_rank(user_id, 1), _has_rank(movie_id, 2)
    same_batch = tf.equal(tf.size(user_id, out_type=tf.int64), tf.shape(movie_id, out_type=tf.int64)[:1])
    valid = tf.logical_and(tf.logical_and(user_rank_ok, movie_rank_ok), tf.reduce_all(same_batch))
    fix = tf.where(
        movie_rank_ok,
        tf.where(
            user_rank_ok,
            "pass one user_id per list: their batch sizes must be equal",
            "user_id must be a vector [batch]",
        ),
        "movie_id must be a matrix [batch, list_size]",
    )
    message = tf.strings.join(
        [f"{SERVING_SIGNATURE}: user_id shape ", _shape_text(user_id), ", movie_id shape ", _shape_text(movie_id)]
    )
    check = tf.debugging.Assert(valid, [tf.strings.join([message, fix], separator=": ")])
    with tf.control_dependencies([check]):
        return tf.identity(user_id), tf.identity(movie_id)


def _serving_signatures(model: keras.Model) -> dict[str, Any]:
    """The two signatures' concrete functions, ``{signature name: function}``."""

    # autograph=False: the model has no tensor-dependent Python control flow, and converting Keras's code dominates
    # tracing time.
    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int64, name="user_id"),
            tf.TensorSpec([None, None], tf.int64, name="movie_id"),
        ],
        autograph=False,
    )
    def score(user_id, movie_id):
        user_id, movie_id = _check_serving_inputs(user_id, movie_id)
        return {"scores": model({"user_id": user_id, "movie_id": movie_id}, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="serialized")], autograph=False)
    def score_examples(serialized):
        features = tf.io.parse_example(
            serialized,
            {
                "user_id": tf.io.FixedLenFeature([], tf.int64),
                "movie_id": tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64),
            },
        )
        # Scores the ragged lists without padding work, then pads the scores.
        scores = model({"user_id": features["user_id"], "movie_id": features["movie_id"]}, training=False)
        return {"scores": scores.to_tensor(default_value=PADDING_SCORE)}

    return {
        SERVING_SIGNATURE: score.get_concrete_function(),
        TF_EXAMPLE_SIGNATURE: score_examples.get_concrete_function(),
    }


def _elwc_signatures(model: DNNRankingModel) -> dict[str, Any]:
    """TF Ranking's ``predict`` signature over serialized ELWC, as ``serving_default`` and ``PREDICT_SIGNATURE``."""
    feature_spec = {name: tf.io.FixedLenFeature([1], tf.float32, default_value=0.0) for name in model.feature_names}
    # A label spec that no serving request needs: items without the label parse to -1, which is never read.
    label_key = "__tfrank_unused_label__"

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=ELWC_INPUT)], autograph=False)
    def score_lists(inputs):
        features, _ = parse_elwc(inputs, None, feature_spec, list_size=None, label_key=label_key)
        # Ragged lists: each list is scored at its own length, then the scores are padded.
        scores = model(features, training=False).to_tensor(default_value=PADDING_SCORE)
        return {ELWC_OUTPUT: scores, "scores": tf.identity(scores)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=ELWC_INPUT)], autograph=False)
    def score_items(inputs):
        items = tf.io.parse_example(inputs, feature_spec)
        # Each item as a list of one: [batch, 1, 1] features give [batch, 1] scores.
        scores = model({name: values[:, tf.newaxis, :] for name, values in items.items()}, training=False)
        return {ELWC_OUTPUT: tf.reshape(scores, [-1])}

    function = score_lists.get_concrete_function()
    return {SERVING_SIGNATURE: function, PREDICT_SIGNATURE: function,
            REGRESS_SIGNATURE: score_items.get_concrete_function()}


def _version_folders(export_dir: str) -> dict[int, str]:
    """``{version: folder name}`` for the integer folders under ``export_dir`` (TF Serving reads "007" as 7)."""
    if not os.path.isdir(export_dir):
        return {}
    return {
        int(name): name
        for name in os.listdir(export_dir)
        if _VERSION_PATTERN.match(name) and os.path.isdir(os.path.join(export_dir, name))
    }


def _remove_stale_tmp_folders(export_dir: str) -> None:
    """Removes the temp folders of exports on this host whose process is gone (killed mid-export, e.g. kill -9).

    A folder from another host, an unknown naming, or a live process (a concurrent export) is never touched.
    """
    host = _processes.host_id()
    for name in os.listdir(export_dir):
        match = _TMP_PATTERN.match(name)
        if match and match["host"] == host and not _processes.process_alive(int(match["pid"])):
            shutil.rmtree(os.path.join(export_dir, name), ignore_errors=True)


def list_versions(export_dir: str) -> list[int]:
    """The integer version folders under ``export_dir``, ascending; ``[]`` when there are none or no folder."""
    return sorted(_version_folders(export_dir))


def version_path(export_dir: str, version: int | None = None) -> str:
    """The folder of ``version`` under ``export_dir``; the latest (highest) version when ``version`` is None."""
    folders = _version_folders(export_dir)
    if version is None:
        if not folders:
            raise FileNotFoundError(f"export_dir={export_dir}: no version folders; export a model there first")
        version = max(folders)
    elif version not in folders:
        raise FileNotFoundError(f"export_dir={export_dir}: no version {version}; versions there: {sorted(folders)}")
    return os.path.join(export_dir, folders[version])


def _whole_copy(model: keras.Model) -> keras.Model:
    """``model`` itself, or when it has variables sharded over parameter servers, a copy with whole variables.

    The SavedModel is then one self-contained model that any process serves, not a reference to the cluster's shards;
    the copy is made from the model's config and given its weights.
    """
    if not any(layers.is_sharded(variable) for variable in model.variables):
        return model
    if tf.distribute.has_strategy():
        raise ValueError(f"model {model.name} has variables sharded over parameter servers: export it outside the "
                         "strategy's scope, where a copy of it holds them whole")
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights([variable.numpy() for variable in model.weights])
    return copy


def export_saved_model(model: keras.Model, export_dir: str, version: int | None = None) -> str:
    """Writes ``model`` as SavedModel ``<export_dir>/<version>/`` for TF Serving and returns that path.

    ``version`` defaults to one more than the highest integer version folder already in ``export_dir`` (1 when there
    is none), so repeated exports of a retrained model roll forward and TF Serving picks up the newest. The SavedModel
    is written to a ``.tmp-<version>-<host>-<pid>-<uuid>`` folder inside ``export_dir`` and renamed into place, so a
    crash never leaves a half-written version where TF Serving would load it; ``<host>`` is the host name and pid
    namespace, and temp folders of killed exports on this host (their pid no longer running) are removed by the next
    export. An existing version is never overwritten.

    Args:
      model: a ranking model taking ``{"user_id", "movie_id"}`` and returning scores, e.g. ``RankingModel``; or a
        ``DNNRankingModel``, exported with the ELWC signatures (see the module's docstring).
      export_dir: the model base path; created if missing. Local filesystem (the rename must be atomic).
      version: an integer >= 1, or None for the next version.

    Raises:
      FileExistsError: ``version`` is given and that folder already exists.
    """
    os.makedirs(export_dir, exist_ok=True)
    _remove_stale_tmp_folders(export_dir)
    if version is None:
        version = max(list_versions(export_dir), default=0) + 1
    elif isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(f"version={version!r}: must be an integer >= 1, or None for the next version")
    version = int(version)
    final_path = os.path.join(export_dir, str(version))
    taken = os.path.join(export_dir, _version_folders(export_dir).get(version, str(version)))
    if os.path.exists(taken):
        raise FileExistsError(
            f"{taken} already exists and versions are never overwritten; pass version=None for the next version "
            "or remove that folder"
        )

    model = _whole_copy(model)
    state = _serving_state(model)
    if isinstance(model, DNNRankingModel):
        state.feature_names = tf.Variable(model.feature_names, trainable=False, name="feature_names")
        signatures = _elwc_signatures(model)
    else:
        signatures = _serving_signatures(model)
    # os.mkdir honours the umask (tempfile.mkdtemp would make it 0700, unreadable by a model server's own user) and
    # fails rather than reuse a folder.
    tmp_name = f"{_TMP_PREFIX}{version}-{_processes.host_id()}-{os.getpid()}-{uuid.uuid4().hex}"
    tmp_path = os.path.join(export_dir, tmp_name)
    os.mkdir(tmp_path)
    try:
        tf.saved_model.save(state, tmp_path, signatures=signatures)
        if os.path.exists(final_path):  # another exporter won the race while we were writing
            raise FileExistsError(f"{final_path} appeared during the export; pass version=None for the next version")
        os.rename(tmp_path, final_path)
    finally:
        if os.path.exists(tmp_path):
            shutil.rmtree(tmp_path, ignore_errors=True)
    return final_path


def load_version(export_dir: str, version: int | None = None) -> Any:
    """Loads ``<export_dir>/<version>`` (the latest when None) with ``tf.saved_model.load``."""
    return tf.saved_model.load(version_path(export_dir, version))


def vocabularies(saved_model: str | os.PathLike | Any) -> dict[str, np.ndarray]:
    """The ids seen in training, ``{"user_id": int64 [users], "movie_id": int64 [movies]}``, saved with the export.

    ``saved_model`` is a version folder or an object returned by ``tf.saved_model.load``. Any other id is scored with
    the model's out-of-vocabulary row.

    Raises:
      ValueError: the export holds no vocabularies (its model had none, or it predates them).
    """
    if isinstance(saved_model, (str, os.PathLike)):
        saved_model = tf.saved_model.load(os.fspath(saved_model))
    _check_movielens_export(saved_model)
    missing = [attribute for attribute in _VOCABULARIES.values() if not hasattr(saved_model, attribute)]
    if missing:
        raise ValueError(
            f"the export holds no {' or '.join(missing)}: export the model again with this tfrank to save them"
        )
    return {feature: getattr(saved_model, attribute).numpy() for feature, attribute in _VOCABULARIES.items()}


def _check_movielens_export(saved_model: Any) -> None:
    """Raises ValueError when ``saved_model`` scores item features (ELWC) rather than user and movie ids."""
    if hasattr(saved_model, "feature_names"):
        raise ValueError("the export is a feature-list model (trained with --dataset=libsvm or elwc): it scores "
                         f"serialized ELWC through its {SERVING_SIGNATURE} signature, not user and movie ids")


def rank_movies(
    saved_model: str | os.PathLike | Any, user_id: int, movie_ids: Sequence[int]
) -> list[tuple[int, float]]:
    """Scores ``movie_ids`` for ``user_id`` through ``serving_default``; returns ``(movie_id, score)`` best first.

    ``saved_model`` is a version folder or an object returned by ``tf.saved_model.load``. Ties keep the input order.

    >>> rank_movies(version_path("/tmp/export"), user_id=42, movie_ids=[409, 237, 131])  # doctest: +SKIP
    [(237, 0.61), (409, 0.12), (131, -0.08)]
    """
    if len(movie_ids) == 0:
        raise ValueError("movie_ids is empty: pass at least one movie id to rank")
    negative = [int(movie_id) for movie_id in movie_ids if movie_id < 0]
    if negative:
        raise ValueError(f"movie_ids {negative[:5]} are negative: movie ids are >= 0 (-1 is padding)")
    if isinstance(saved_model, (str, os.PathLike)):
        saved_model = tf.saved_model.load(os.fspath(saved_model))
    _check_movielens_export(saved_model)
    outputs = saved_model.signatures[SERVING_SIGNATURE](
        user_id=tf.constant([user_id], tf.int64), movie_id=tf.constant([list(movie_ids)], tf.int64)
    )
    scores = outputs["scores"].numpy()[0]
    order = np.argsort(-scores, kind="stable")
    return [(int(movie_ids[i]), float(scores[i])) for i in order]
