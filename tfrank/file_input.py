"""The lists of a run on TF Ranking's data files (``dataset="libsvm"`` or ``"elwc"``): the files are the splits.

No vocabularies, no split and no list sampling: each of ``train_path``, ``valid_path`` and ``test_path`` holds its
lists (one ``qid`` / one ELWC record each), read by :func:`tfrank.data.read_libsvm` or :func:`tfrank.data.read_elwc`.
The per-item numerical features are named as those readers name them: "1" ... "num_features" (LibSVM) or
``<feature_prefix>1`` ... ``<feature_prefix><num_features>`` (ELWC; TF Ranking's numerical examples use
``custom_features_``), float32 ``[batch, list_size, 1]``, plus the boolean mask ``MASK_FEATURE`` of the real items.

Training lists are cut to their first ``list_size`` items and padded to it, as the readers' ``list_size`` does;
validation and test lists are never cut (a cut list would change its metrics): each batch is padded to its longest
list. Padded items have label ``PADDING_LABEL`` (-1), zero features and mask False.
"""

import glob
import os
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf

from tfrank import data as tfrank_data
from tfrank.data._tfdata import plain
from tfrank.dnn_models import MASK_FEATURE
from tfrank.ops import PADDING_LABEL
from tfrank.stream_input import MEMORY

LIBSVM = "libsvm"
ELWC = "elwc"
DATASETS = (LIBSVM, ELWC)
# TF Ranking's numerical ELWC examples name their features custom_features_1 ... and their int64 label utility.
DEFAULT_FEATURE_PREFIX = "custom_features_"
DEFAULT_LABEL_KEY = "utility"
_READ_BATCH = 256  # lists per read batch while loading the training lists into memory
_PATH_FIELDS = ("train_path", "valid_path", "test_path")


def feature_names(dataset: str, num_features: int, feature_prefix: str = DEFAULT_FEATURE_PREFIX) -> List[str]:
    """The per-item feature names of ``dataset``: "1".."N" for LibSVM, ``<feature_prefix>1``.. for ELWC."""
    prefix = "" if dataset == LIBSVM else feature_prefix
    return [f"{prefix}{index}" for index in range(1, num_features + 1)]


def check_config(dataset: str, paths: Dict[str, Optional[str]], num_features: Optional[int], feature_prefix: str,
                 label_key: str, input_name: str) -> None:
    """Raises ValueError naming the first bad flag of a run on ``dataset`` (``libsvm`` or ``elwc``)."""
    for field in _PATH_FIELDS:
        path = paths.get(field)
        if not path:
            raise ValueError(f"{field} is unset: dataset={dataset} reads its lists from files; pass --train_path, "
                             "--valid_path and --test_path")
        if dataset == LIBSVM and not os.path.isfile(path):
            raise ValueError(f"{field}={path!r}: no such file; give a LibSVM/LETOR text file")
        if dataset == ELWC and not glob.glob(path):
            raise ValueError(f"{field}={path!r}: matches no file; give TFRecord files of ELWC protos (a glob is fine)")
    if num_features is None or num_features < 1:
        raise ValueError(f"num_features={num_features}: dataset={dataset} needs the number of per-item numerical "
                         "features (>= 1; 136 for MSLR-WEB and TF Ranking's examples)")
    if dataset == ELWC and not feature_prefix:
        raise ValueError("feature_prefix is empty: ELWC features are named <feature_prefix>1 ... (TF Ranking's "
                         f"examples: {DEFAULT_FEATURE_PREFIX})")
    if dataset == ELWC and not label_key:
        raise ValueError(f"label_key is empty: name the items' label feature (TF Ranking's examples: "
                         f"{DEFAULT_LABEL_KEY})")
    if input_name != MEMORY:
        raise ValueError(f"input={input_name} with dataset={dataset}: the lists of a file are read into memory; use "
                         f"input={MEMORY}")


def example_feature_spec(names: List[str]) -> Dict[str, tf.io.FixedLenFeature]:
    """The ELWC spec of the per-item numerical features: float32 ``[1]``, 0 when an item lacks one."""
    return {name: tf.io.FixedLenFeature([1], tf.float32, default_value=0.0) for name in names}


def read_ragged_lists(dataset: str, path: str, num_features: int, feature_prefix: str, label_key: str,
                      batch_size: int) -> tf.data.Dataset:
    """Batches ``(features, labels)`` of the whole lists of ``path``: ragged ``[batch, None, 1]``, ``[batch, None]``."""
    if dataset == LIBSVM:
        return tfrank_data.read_libsvm(path, num_features, list_size=None, batch_size=batch_size)
    names = feature_names(dataset, num_features, feature_prefix)
    spec = example_feature_spec(names)
    spec[label_key] = tf.io.FixedLenFeature([1], tf.int64, default_value=[int(PADDING_LABEL)])
    return tfrank_data.read_elwc(path, None, spec, list_size=None, label_key=label_key, batch_size=batch_size)


def pad_lists(features: Dict[str, Any], labels: tf.RaggedTensor, names: List[str],
              list_size: Optional[int] = None) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
    """Ragged lists -> dense ``[batch, list_size]`` with ``MASK_FEATURE``; cut to ``list_size`` when given, else
    padded to the longest list of the batch."""
    if list_size is not None:
        labels = labels[:, :list_size]
        features = {name: features[name][:, :list_size] for name in names}
    shape = None if list_size is None else [None, list_size]
    padded = {name: features[name].to_tensor(0.0, shape=None if shape is None else shape + [1]) for name in names}
    padded[MASK_FEATURE] = tf.ones_like(labels, tf.bool).to_tensor(False, shape=shape)
    return padded, labels.to_tensor(PADDING_LABEL, shape=shape)


def load_training_lists(dataset: str, path: str, num_features: int, feature_prefix: str, label_key: str,
                        list_size: int) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
    """Every list of ``path`` in memory, cut or padded to ``list_size``: ``(features, labels [lists, list_size])``.

    Raises:
      ValueError: the file holds no list.
    """
    names = feature_names(dataset, num_features, feature_prefix)
    batches = read_ragged_lists(dataset, path, num_features, feature_prefix, label_key, _READ_BATCH).map(
        plain(lambda features, labels: pad_lists(features, labels, names, list_size)))
    parts = list(batches)
    if not parts:
        raise ValueError(f"train_path={path!r} holds no list: give a file with at least one list")
    features = {key: tf.concat([part[0][key] for part in parts], axis=0) for key in parts[0][0]}
    return features, tf.concat([part[1] for part in parts], axis=0)


def evaluation_lists(dataset: str, path: str, num_features: int, feature_prefix: str, label_key: str,
                     batch_size: int) -> tf.data.Dataset:
    """Batches of the whole lists of ``path``, each padded to its longest list, with ``MASK_FEATURE``."""
    names = feature_names(dataset, num_features, feature_prefix)
    return read_ragged_lists(dataset, path, num_features, feature_prefix, label_key, batch_size).map(
        plain(lambda features, labels: pad_lists(features, labels, names)))
