"""Tests for tfrank.dnn_models.DNNRankingModel: per-item scores, padding mask, ragged lists, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrank.dnn_models import MASK_FEATURE, DNNRankingModel, log1p_transform
from tfrank.ops import PADDING_SCORE

NAMES = ["1", "2", "3"]


def _model(**kwargs) -> DNNRankingModel:
    model = DNNRankingModel(NAMES, hidden_units=kwargs.pop("hidden_units", (8, 4)), **kwargs)
    rng = np.random.default_rng(0)
    for variable in model.trainable_weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype("float32"))
    return model


def _features(values: np.ndarray) -> dict:
    """[batch, list, 3] numbers -> {"1": [batch, list, 1], ...}."""
    return {name: tf.constant(values[..., i:i + 1], tf.float32) for i, name in enumerate(NAMES)}


VALUES = np.random.default_rng(1).normal(size=[2, 4, 3]).astype("float32") * 5


def test_log1p_transform_keeps_the_sign():
    np.testing.assert_allclose(log1p_transform(tf.constant([-3.0, 0.0, 3.0])).numpy(),
                               [-np.log1p(3.0), 0.0, np.log1p(3.0)], rtol=1e-6)


def test_each_item_is_scored_from_its_own_features():
    model = _model()
    scores = model(_features(VALUES)).numpy()
    assert scores.shape == (2, 4)
    alone = model(_features(VALUES[1:, 2:3])).numpy()
    np.testing.assert_allclose(scores[1, 2], alone[0, 0], rtol=1e-5)
    assert len(np.unique(scores)) == 8


def test_masked_items_get_padding_score_and_leave_real_scores_unchanged():
    model = _model()
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    scores = model({**_features(VALUES), MASK_FEATURE: tf.constant(mask)}).numpy()
    assert np.all(scores[~mask] == PADDING_SCORE)
    np.testing.assert_allclose(scores[mask], model(_features(VALUES)).numpy()[mask], rtol=1e-5)


def test_batch_norm_learns_statistics_of_real_items_only():
    model = DNNRankingModel(NAMES, batch_norm_momentum=0.0)
    values = np.ones([1, 3, 3], np.float32)
    values[0, 2] = 100.0  # a padded item's features must not reach the statistics
    model({**_features(values), MASK_FEATURE: tf.constant([[True, True, False]])}, training=True)
    np.testing.assert_allclose(model.input_batch_norm.moving_mean.numpy(), [np.log1p(1.0)] * 3, rtol=1e-5)


def test_ragged_lists_give_ragged_scores_equal_to_dense_ones():
    model = _model()
    lengths = [4, 2]
    ragged = {name: tf.RaggedTensor.from_tensor(column, lengths=lengths) for name, column in
              _features(VALUES).items()}
    scores = model(ragged)
    assert isinstance(scores, tf.RaggedTensor)
    assert scores.row_lengths().numpy().tolist() == lengths
    dense = model(_features(VALUES)).numpy()
    np.testing.assert_allclose(scores.to_tensor(0.0).numpy()[1, :2], dense[1, :2], rtol=1e-5)


def test_graph_mode_scores_equal_eager_scores():
    model = _model()
    inputs = {**_features(VALUES), MASK_FEATURE: tf.constant([[True] * 3 + [False], [True] * 4])}
    np.testing.assert_allclose(tf.function(lambda x: model(x))(inputs).numpy(), model(inputs).numpy(), rtol=1e-6)


def test_keras_file_round_trip_keeps_scores(tmp_path):
    model = _model(dropout=0.25)
    path = str(tmp_path / "dnn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, DNNRankingModel)
    assert loaded.get_config()["feature_names"] == NAMES and loaded.dropout == 0.25
    np.testing.assert_allclose(loaded(_features(VALUES)).numpy(), model(_features(VALUES)).numpy(), rtol=1e-6)


def test_missing_feature_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"inputs lack features \['3'\]"):
        _model()({"1": tf.ones([1, 2, 1]), "2": tf.ones([1, 2, 1])})


@pytest.mark.parametrize("kwargs, match", [
    ({"feature_names": []}, "feature_names is empty"),
    ({"feature_names": ["1", "1"]}, "names a feature twice"),
    ({"feature_names": ["1"], "hidden_units": [0]}, "hidden_units"),
    ({"feature_names": ["1"], "dropout": 1.0}, "dropout=1.0"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DNNRankingModel(**kwargs)


def test_the_model_is_importable_from_tfrank_models():
    import tfrank.models
    assert tfrank.models.DNNRankingModel is DNNRankingModel
