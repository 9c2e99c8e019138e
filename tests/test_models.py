"""Tests for tfrank.models.RankingModel: shapes, padding, out-of-vocabulary ids, ragged input, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrank.models import RankingModel
from tfrank.ops import PADDING_ID, PADDING_SCORE

USERS = [3, 7, 42]
MOVIES = [10, 20, 30, 40, 50]


def _model(seed: int = 0, **kwargs) -> RankingModel:
    """A small model with weights large enough that different inputs give clearly different scores."""
    model = RankingModel(USERS, MOVIES, embedding_dim=kwargs.pop("embedding_dim", 8), **kwargs)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype("float32"))
    return model


def _inputs(user_id, movie_id) -> dict:
    return {"user_id": tf.constant(user_id, tf.int64), "movie_id": tf.constant(movie_id, tf.int64)}


def test_dense_scores_have_the_shape_of_movie_ids():
    scores = _model()(_inputs([3, 7], [[10, 20, 30], [40, 50, 10]]))
    assert scores.dtype == tf.float32
    assert scores.shape == (2, 3)
    assert np.all(np.isfinite(scores.numpy()))


def test_padded_items_get_exactly_padding_score():
    scores = _model()(_inputs([3, 7], [[10, PADDING_ID, PADDING_ID], [40, 50, PADDING_ID]])).numpy()
    assert scores[0, 1] == PADDING_SCORE and scores[0, 2] == PADDING_SCORE and scores[1, 2] == PADDING_SCORE
    assert np.all(scores[[0, 1, 1], [0, 0, 1]] > PADDING_SCORE)


def test_unknown_movies_share_the_out_of_vocabulary_score():
    scores = _model()(_inputs([3], [[999, 123456, 10, -7]])).numpy()[0]
    assert np.all(np.isfinite(scores))
    assert scores[0] == scores[1] == scores[3]  # every unseen id uses row 0 (negative ids other than padding too)
    assert scores[0] != scores[2]


def test_unknown_users_share_the_out_of_vocabulary_score():
    scores = _model()(_inputs([1000, 5, 3], [[10, 20]] * 3)).numpy()
    np.testing.assert_array_equal(scores[0], scores[1])
    assert not np.allclose(scores[0], scores[2])


def test_each_list_is_scored_for_its_own_user():
    model = _model()
    together = model(_inputs([3, 42], [[10, 20], [10, 20]])).numpy()
    alone = [model(_inputs([user], [[10, 20]])).numpy()[0] for user in (3, 42)]
    np.testing.assert_allclose(together, np.stack(alone), rtol=1e-6)
    assert not np.allclose(together[0], together[1])


def test_ragged_input_equals_its_padded_twin_on_valid_items():
    model = _model()
    ragged = tf.ragged.constant([[10, 20, 30], [40], [50, 999]], dtype=tf.int64)
    ragged_scores = model({"user_id": tf.constant([3, 7, 42], tf.int64), "movie_id": ragged})
    padded_scores = model({"user_id": tf.constant([3, 7, 42], tf.int64), "movie_id": ragged.to_tensor(PADDING_ID)})
    assert isinstance(ragged_scores, tf.RaggedTensor)
    assert ragged_scores.dtype == tf.float32
    np.testing.assert_array_equal(ragged_scores.row_lengths().numpy(), [3, 1, 2])
    np.testing.assert_allclose(
        ragged_scores.to_tensor(PADDING_SCORE).numpy(), padded_scores.numpy(), rtol=1e-6, atol=1e-6
    )


def test_padding_id_inside_a_ragged_list_gets_padding_score_like_dense_input():
    model = _model()
    ragged = tf.ragged.constant([[10, PADDING_ID, 30], [PADDING_ID]], dtype=tf.int64)
    user_id = tf.constant([3, 7], tf.int64)
    ragged_scores = model({"user_id": user_id, "movie_id": ragged}).to_tensor(0.0).numpy()
    dense_scores = model({"user_id": user_id, "movie_id": ragged.to_tensor(PADDING_ID)}).numpy()
    assert ragged_scores[0, 1] == ragged_scores[1, 0] == PADDING_SCORE
    np.testing.assert_allclose(ragged_scores[0], dense_scores[0], rtol=1e-6)


def _call_in_graph_mode(model, user_id, movie_id, ragged=False):
    """Calls ``model`` in a tf.function whose input shapes are unknown until run, as in serving."""
    movie_spec = tf.RaggedTensorSpec([None, None], tf.int64) if ragged else tf.TensorSpec([None, None], tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), movie_spec], autograph=False)
    def score(user_id, movie_id):
        return model({"user_id": user_id, "movie_id": movie_id})

    return score(user_id, movie_id)


@pytest.mark.parametrize("graph_mode", [False, True], ids=["eager", "graph"])
def test_one_user_for_several_lists_is_rejected_not_broadcast(graph_mode):
    model = _model()
    user_id, movie_id = tf.constant([3], tf.int64), tf.constant([[10, 20], [30, 40], [50, 10]], tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="user_id and movie_id have different batch sizes"):
        if graph_mode:
            _call_in_graph_mode(model, user_id, movie_id)
        else:
            model({"user_id": user_id, "movie_id": movie_id})


@pytest.mark.parametrize("graph_mode", [False, True], ids=["eager", "graph"])
def test_ragged_lists_need_one_user_each(graph_mode):
    model = _model()
    user_id, movie_id = tf.constant([3, 7, 42], tf.int64), tf.ragged.constant([[10, 20], [30]], dtype=tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="different batch sizes"):
        if graph_mode:
            _call_in_graph_mode(model, user_id, movie_id, ragged=True)
        else:
            model({"user_id": user_id, "movie_id": movie_id})


def test_graph_mode_scores_equal_eager_scores():
    model = _model()
    user_id, movie_id = tf.constant([3, 7], tf.int64), tf.constant([[10, 20, PADDING_ID], [40, 50, 10]], tf.int64)
    np.testing.assert_array_equal(
        _call_in_graph_mode(model, user_id, movie_id).numpy(),
        model({"user_id": user_id, "movie_id": movie_id}).numpy(),
    )


@pytest.mark.parametrize("movie_id", [[10, 20], [[[10, 20]]]], ids=["rank1", "rank3"])
def test_movie_id_of_the_wrong_rank_is_rejected_with_its_name(movie_id):
    with pytest.raises(ValueError, match=r"movie_id has shape .*\[batch, list_size\]"):
        _model()(_inputs([3], movie_id))


def test_user_id_column_gives_the_same_scores_as_a_vector():
    model = _model()
    movie_id = [[10, 20], [30, PADDING_ID]]
    np.testing.assert_array_equal(
        model(_inputs([[3], [7]], movie_id)).numpy(), model(_inputs([3, 7], movie_id)).numpy()
    )


def test_int32_ids_are_accepted():
    model = _model()
    int32 = {"user_id": tf.constant([3], tf.int32), "movie_id": tf.constant([[10, 20]], tf.int32)}
    np.testing.assert_array_equal(model(int32).numpy(), model(_inputs([3], [[10, 20]])).numpy())


def test_model_has_the_tutorial_architecture():
    model = _model(embedding_dim=8)
    shapes = {weight.path.split("/", 1)[1]: tuple(weight.shape) for weight in model.weights}
    assert shapes == {
        "user_embedding/embeddings": (len(USERS) + 1, 8),  # + the out-of-vocabulary row
        "movie_embedding/embeddings": (len(MOVIES) + 1, 8),
        "hidden_256/kernel": (16, 256),
        "hidden_256/bias": (256,),
        "hidden_64/kernel": (256, 64),
        "hidden_64/bias": (64,),
        "score/kernel": (64, 1),
        "score/bias": (1,),
    }


def _tutorial_scores(model: RankingModel, user_ids: list, movie_ids: list) -> np.ndarray:
    """The tutorial's computation in numpy: concat(user, movie embedding) per item -> 256 relu -> 64 relu -> 1."""
    weights = {weight.path.split("/", 1)[1]: np.asarray(weight, np.float64) for weight in model.weights}
    user_rows = [USERS.index(user) + 1 for user in user_ids]
    movie_rows = [[MOVIES.index(movie) + 1 for movie in row] for row in movie_ids]
    users = weights["user_embedding/embeddings"][user_rows]  # [batch, dim]
    movies = weights["movie_embedding/embeddings"][movie_rows]  # [batch, list, dim]
    features = np.concatenate([np.broadcast_to(users[:, None, :], movies.shape), movies], axis=-1)
    for name in ("hidden_256", "hidden_64"):
        features = np.maximum(features @ weights[f"{name}/kernel"] + weights[f"{name}/bias"], 0.0)
    return (features @ weights["score/kernel"] + weights["score/bias"])[..., 0]


@pytest.mark.parametrize("ragged", [False, True], ids=["dense", "ragged"])
def test_scores_equal_the_tutorial_concatenation_model(ragged):
    model = _model()
    user_ids, movie_ids = [3, 42], [[10, 20, 30], [50, 40, 10]]
    expected = _tutorial_scores(model, user_ids, movie_ids)
    movies = tf.RaggedTensor.from_tensor(tf.constant(movie_ids, tf.int64)) if ragged else tf.constant(movie_ids)
    scores = model({"user_id": tf.constant(user_ids, tf.int64), "movie_id": movies})
    scores = scores.to_tensor() if ragged else scores
    assert np.abs(expected).max() > 1.0  # weights large enough that a wrong wiring could not pass
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_gradients_reach_every_weight():
    model = _model()
    with tf.GradientTape() as tape:
        scores = model(_inputs([3, 999], [[10, 20, PADDING_ID], [30, 888, 40]]))
        loss = tf.reduce_sum(tf.where(scores > PADDING_SCORE, scores, 0.0) ** 2)
    gradients = tape.gradient(loss, model.trainable_weights)
    assert all(gradient is not None for gradient in gradients)


def test_config_round_trip_rebuilds_the_same_model():
    model = _model()
    config = model.get_config()
    assert config["user_vocabulary"] == USERS and config["movie_vocabulary"] == MOVIES
    assert config["embedding_dim"] == 8
    clone = RankingModel.from_config(config)
    clone.set_weights(model.get_weights())
    inputs = _inputs([3, 1000], [[10, 999, PADDING_ID], [20, 30, 40]])
    np.testing.assert_array_equal(clone(inputs).numpy(), model(inputs).numpy())


def test_keras_file_loads_back_with_identical_scores(tmp_path):
    model = _model()
    path = str(tmp_path / "ranking.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, RankingModel)
    inputs = _inputs([3, 1000], [[10, 999, PADDING_ID], [20, 30, 40]])
    np.testing.assert_array_equal(loaded(inputs).numpy(), model(inputs).numpy())
    np.testing.assert_array_equal(loaded.movie_vocabulary, MOVIES)


@pytest.mark.parametrize(
    "movie_vocabulary, message",
    [([], "movie_vocabulary is empty"), ([1, 2, 2], "repeats ids"), ([1, PADDING_ID], "PADDING_ID"), ([1.5], "dtype")],
)
def test_bad_vocabulary_is_rejected_with_its_name(movie_vocabulary, message):
    with pytest.raises(ValueError, match=message):
        RankingModel(USERS, movie_vocabulary)


def test_vocabulary_from_a_tensor_of_unique_ids():
    ids, _ = tf.unique(tf.constant([40, 10, 40, 20], tf.int64))
    model = RankingModel(USERS, ids.numpy())
    np.testing.assert_array_equal(model.movie_vocabulary, [40, 10, 20])


def _graph_ops(graph: tf.Graph) -> list:
    """The ops of ``graph`` and of the functions it calls."""
    ops = graph.get_operations()
    for function in graph._functions.values():
        if hasattr(function, "graph"):
            ops += _graph_ops(function.graph)
    return ops


@pytest.mark.parametrize("ema", [False, True])
def test_train_step_reads_and_updates_only_the_rows_of_its_batch(ema):
    # The step's cost must follow the batch, not the vocabulary: no op of the model's forward pass, its gradient
    # or the optimizer may produce a tensor the size of an embedding table (a whole-table read is a copy once the
    # table has had sparse updates).
    from tfrank import losses, optimizers

    num_users, num_movies = 1009, 2003  # sizes no other tensor of the step has
    model = RankingModel(np.arange(num_users), np.arange(num_movies), embedding_dim=4)
    optimizer = optimizers.Adagrad(use_ema=ema)
    optimizer.build(model.trainable_variables)
    loss = losses.PairwiseHingeLoss()

    def step(user_id, movie_id, labels):
        with tf.GradientTape() as tape:
            value = loss(labels, model({"user_id": user_id, "movie_id": movie_id}, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables))

    specs = (tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None, None]))
    graph = tf.function(step, autograph=False).get_concrete_function(*specs).graph
    ops = _graph_ops(graph)
    assert {"ResourceGather", "ResourceScatterAdd"} <= {op.type for op in ops}
    table_sized = [(op.type, output.shape) for op in ops for output in op.outputs
                   if output.shape.rank and output.shape[0] in (num_users + 1, num_movies + 1)]
    assert table_sized == []


def test_checkpoint_holds_and_restores_every_weight_of_the_model(tmp_path):
    trained = RankingModel(user_vocabulary=[1, 2, 3], movie_vocabulary=[10, 20, 30], embedding_dim=4)
    for variable in trained.trainable_variables:  # values no fresh model starts from
        variable.assign(tf.random.stateless_normal(variable.shape, seed=[7, len(variable.path)]))
    path = tf.train.Checkpoint(model=trained).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.startswith("model/")]
    assert len(saved) == len(trained.trainable_variables) == 8

    fresh = RankingModel(user_vocabulary=[1, 2, 3], movie_vocabulary=[10, 20, 30], embedding_dim=4)
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    for restored, expected in zip(fresh.trainable_variables, trained.trainable_variables):
        np.testing.assert_array_equal(restored.numpy(), expected.numpy(), err_msg=expected.path)
