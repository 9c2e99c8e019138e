"""SavedModels for TF Serving: versioned, atomic exports with a tensor and a ``tf.Example`` signature.

Layout (TF Serving's): ``<export_dir>/<version>/saved_model.pb`` plus ``variables/``, where ``<version>`` is an
integer folder. Point ``tensorflow_model_server --model_base_path`` at ``export_dir``; it serves the highest version.

Signatures (tag ``serve``):
  - ``serving_default``: ``user_id`` int64 ``[batch]``, ``movie_id`` int64 ``[batch, list_size]`` (short lists padded
    with ``PADDING_ID`` = -1) -> ``scores`` float32 ``[batch, list_size]``.
  - ``tf_example``: ``serialized`` string ``[batch]`` of ``tf.train.Example`` protos, one per user, with int64 features
    ``user_id`` (one value) and ``movie_id`` (any number of values) -> ``scores`` float32 ``[batch, max_list_size]``.
Ids not seen in training get finite scores (the model's out-of-vocabulary row); padded positions get
``PADDING_SCORE`` = -1e9. The SavedModel holds only standard TensorFlow ops and loads without tfrank installed.
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

from tfrank.ops import PADDING_SCORE

SERVING_SIGNATURE = "serving_default"
TF_EXAMPLE_SIGNATURE = "tf_example"
_TMP_PREFIX = ".tmp-"  # TF Serving only loads integer folders, so an export in progress is invisible to it.
_VERSION_PATTERN = re.compile(r"^\d+$")


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
    return state


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


def _version_folders(export_dir: str) -> dict[int, str]:
    """``{version: folder name}`` for the integer folders under ``export_dir`` (TF Serving reads "007" as 7)."""
    if not os.path.isdir(export_dir):
        return {}
    return {
        int(name): name
        for name in os.listdir(export_dir)
        if _VERSION_PATTERN.match(name) and os.path.isdir(os.path.join(export_dir, name))
    }


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


def export_saved_model(model: keras.Model, export_dir: str, version: int | None = None) -> str:
    """Writes ``model`` as SavedModel ``<export_dir>/<version>/`` for TF Serving and returns that path.

    ``version`` defaults to one more than the highest integer version folder already in ``export_dir`` (1 when there
    is none), so repeated exports of a retrained model roll forward and TF Serving picks up the newest. The SavedModel
    is written to a ``.tmp-*`` folder inside ``export_dir`` and renamed into place, so a crash never leaves a
    half-written version where TF Serving would load it. An existing version is never overwritten.

    Args:
      model: a ranking model taking ``{"user_id", "movie_id"}`` and returning scores, e.g. ``RankingModel``.
      export_dir: the model base path; created if missing. Local filesystem (the rename must be atomic).
      version: an integer >= 1, or None for the next version.

    Raises:
      FileExistsError: ``version`` is given and that folder already exists.
    """
    os.makedirs(export_dir, exist_ok=True)
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

    state, signatures = _serving_state(model), _serving_signatures(model)
    # os.mkdir honours the umask (tempfile.mkdtemp would make it 0700, unreadable by a model server's own user) and
    # fails rather than reuse a folder.
    tmp_path = os.path.join(export_dir, f"{_TMP_PREFIX}{version}-{uuid.uuid4().hex}")
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
    if isinstance(saved_model, (str, os.PathLike)):
        saved_model = tf.saved_model.load(os.fspath(saved_model))
    outputs = saved_model.signatures[SERVING_SIGNATURE](
        user_id=tf.constant([user_id], tf.int64), movie_id=tf.constant([list(movie_ids)], tf.int64)
    )
    scores = outputs["scores"].numpy()[0]
    order = np.argsort(-scores, kind="stable")
    return [(int(movie_ids[i]), float(scores[i])) for i in order]
