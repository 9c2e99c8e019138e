"""Tests for tfrank.feature_models: feature tables from training ratings only, the model's serving contract
(shapes, padding, ragged lists, unknown ids), save/load, export and serving, every loss, and its quality on MovieLens.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT
from test_export import _serve_in_c, serve_binary  # noqa: F401  (serve_binary is a fixture)

from tfrank import data as tfrank_data
from tfrank import export, losses, metrics, training
from tfrank.feature_models import FeatureRankingModel, FeatureTables, factorise_ratings, feature_tables, genre_matrix
from tfrank.ops import PADDING_ID, PADDING_SCORE

USERS = np.array([3, 7, 42])
MOVIES = np.array([10, 20, 30, 40, 50])
GENRES = ("Action", "Comedy")
# (user, movie, stars): user 3 likes comedies (30, 40) more than the movies' consensus.
RATINGS = np.array([(3, 10, 2), (3, 30, 5), (3, 40, 5), (7, 10, 4), (7, 30, 3), (7, 40, 3), (42, 20, 4),
                    (42, 50, 1), (7, 50, 2)])
MOVIE_GENRES = {10: ["Action"], 20: ["Action"], 30: ["Comedy"], 40: ["Comedy", "Action"], 50: []}


def _tables(factor_dim=4, shrinkage=1.0) -> FeatureTables:
    genre_ids = np.array(sorted(MOVIE_GENRES))
    genres = genre_matrix(genre_ids, [MOVIE_GENRES[m] for m in genre_ids], GENRES)
    return feature_tables(RATINGS[:, 0], RATINGS[:, 1], RATINGS[:, 2], USERS, MOVIES, genres=genres,
                          genre_movie_ids=genre_ids, shrinkage=shrinkage, factor_dim=factor_dim)


def _model(seed: int = 0, **kwargs) -> FeatureRankingModel:
    """A small model whose MLP weights are large enough that different inputs give clearly different scores."""
    model = FeatureRankingModel(USERS, MOVIES, embedding_dim=4, tables=_tables(), **kwargs)
    rng = np.random.default_rng(seed)
    for layer in model.hidden_layers + [model.score_layer]:
        for variable in layer.weights:
            variable.assign(rng.normal(scale=0.5, size=variable.shape).astype("float32"))
    return model


def _inputs(user_id, movie_id) -> dict:
    return {"user_id": tf.constant(user_id, tf.int64), "movie_id": tf.constant(movie_id, tf.int64)}


# --- feature tables ------------------------------------------------------------------------------------------------


def test_movie_table_holds_shrunk_centred_means_counts_and_genres():
    tables = _tables(shrinkage=1.0)
    mean = RATINGS[:, 2].mean()
    # Movie 10 (row 1): ratings 2 and 4, one pseudo-rating at the global mean.
    assert tables.movie_table[1, 0] == pytest.approx(((2 - mean) + (4 - mean)) / 3, rel=1e-6)
    counts = np.array([0, 2, 1, 2, 2, 2])
    np.testing.assert_allclose(tables.movie_table[:, 1], np.log1p(counts) / np.log1p(2), rtol=1e-6)
    np.testing.assert_array_equal(tables.movie_table[:, 2:], [[0, 0], [1, 0], [1, 0], [0, 1], [1, 1], [0, 0]])


def test_user_genre_affinity_is_the_shrunk_residual_over_the_movie_means():
    tables = _tables(shrinkage=1.0)
    mean = RATINGS[:, 2].mean()
    movie_mean = {movie: tables.movie_table[row + 1, 0] for row, movie in enumerate(MOVIES)}
    # User 3 (row 1) rated comedies 30 and 40: residuals over their movie means, plus one pseudo-rating at 0.
    comedy = ((5 - mean - movie_mean[30]) + (5 - mean - movie_mean[40])) / 3
    assert tables.user_table[1, 2 + 1] == pytest.approx(comedy, rel=1e-5)
    assert tables.user_table[1, 2 + 1] > 0 > tables.user_table[2, 2 + 1]  # user 7 rated them below consensus


def test_row_zero_is_the_default_row_for_unknown_ids():
    tables = _tables()
    for table in (tables.user_table, tables.movie_table, tables.user_factors, tables.movie_factors):
        np.testing.assert_array_equal(table[0], np.zeros_like(table[0]))
    assert tables.movie_biases[0] == 0.0


def test_ratings_of_ids_outside_the_vocabulary_do_not_shift_rows():
    extra = np.array([(99, 10, 5), (3, 99, 1)])
    with_extra = feature_tables(np.r_[RATINGS[:, 0], extra[:, 0]], np.r_[RATINGS[:, 1], extra[:, 1]],
                                np.r_[RATINGS[:, 2], extra[:, 2]], USERS, MOVIES)
    # Movie 10 (row 1) counts its rating by unknown user 99; the rating of unknown movie 99 counts for no movie.
    np.testing.assert_allclose(with_extra.movie_table[:, 1], np.log1p([0, 3, 1, 2, 2, 2]) / np.log1p(3), rtol=1e-6)
    np.testing.assert_array_equal(with_extra.movie_table[0], 0.0)
    np.testing.assert_array_equal(with_extra.user_table[0], 0.0)


def test_unknown_genre_name_is_rejected_naming_the_movie():
    with pytest.raises(ValueError, match="movie 7 has genre 'Cartoon': must be one of Action, Comedy"):
        genre_matrix(np.array([7]), [["Cartoon"]], GENRES)


def test_factorisation_fits_the_training_ratings_better_than_the_mean():
    users, movies = np.repeat(np.arange(1, 21), 10), np.tile(np.arange(1, 11), 20)
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(21, 2)) @ rng.normal(size=(2, 11))
    ratings = truth[users, movies]
    p, q, b = factorise_ratings(users, movies, ratings - ratings.mean(), 21, 11, dim=2, l2=0.1)
    residual = ratings - ratings.mean() - (p[users] * q[movies]).sum(-1) - b[movies]
    # The user biases are dropped (a user's own offset does not rank), so each user's residual may be offset.
    residual -= np.bincount(users, weights=residual)[users] / np.bincount(users)[users]
    assert np.sqrt(np.mean(residual**2)) < 0.05 * np.std(ratings)


# --- the model's serving contract ------------------------------------------------------------------------------------


def test_dense_scores_have_the_shape_of_movie_ids_and_padding_gets_padding_score():
    scores = _model()(_inputs([3, 7], [[10, 20, 30], [40, PADDING_ID, PADDING_ID]])).numpy()
    assert scores.shape == (2, 3) and scores.dtype == np.float32
    assert scores[1, 1] == scores[1, 2] == PADDING_SCORE
    assert np.isfinite(scores).all() and len(set(scores[0].tolist())) == 3


def test_unknown_ids_read_the_default_row():
    model = _model()
    scores = model(_inputs([3, 3, 999], [[10, 777, 888], [10, 777, 888], [10, 777, 888]])).numpy()
    assert scores[0, 1] == scores[0, 2]  # unseen movies share row 0
    np.testing.assert_array_equal(scores[0], scores[1])
    assert np.isfinite(scores).all() and scores[2, 0] != scores[0, 0]  # an unseen user is scored, differently


def test_each_list_is_scored_for_its_own_user():
    model = _model()
    together = model(_inputs([3, 7], [[10, 30], [10, 30]])).numpy()
    np.testing.assert_array_equal(together[0], model(_inputs([3], [[10, 30]])).numpy()[0])
    np.testing.assert_array_equal(together[1], model(_inputs([7], [[10, 30]])).numpy()[0])
    assert not np.array_equal(together[0], together[1])


@pytest.mark.parametrize("graph_mode", [False, True], ids=["eager", "graph"])
def test_ragged_input_equals_its_padded_twin(graph_mode):
    model = _model()
    user_id = tf.constant([3, 42], tf.int64)
    ragged = tf.ragged.constant([[10, 20, 30], [50]], dtype=tf.int64)
    call = tf.function(lambda inputs: model(inputs), autograph=False) if graph_mode else model
    ragged_scores = call({"user_id": user_id, "movie_id": ragged})
    dense_scores = call({"user_id": user_id, "movie_id": ragged.to_tensor(default_value=PADDING_ID)})
    assert isinstance(ragged_scores, tf.RaggedTensor)
    np.testing.assert_allclose(ragged_scores.to_tensor(default_value=PADDING_SCORE).numpy(), dense_scores.numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("graph_mode", [False, True], ids=["eager", "graph"])
def test_one_user_for_several_lists_is_rejected_not_broadcast(graph_mode):
    model = _model()
    call = tf.function(lambda inputs: model(inputs), autograph=False) if graph_mode else model
    with pytest.raises(tf.errors.InvalidArgumentError, match="different batch sizes"):
        call(_inputs([3], [[10, 20], [30, 40]]))


def test_tables_of_the_wrong_shape_are_rejected_with_their_name():
    tables = _tables()
    with pytest.raises(ValueError, match=r"user_factors has shape \(4, 4\): must be \(4, 8\)"):
        FeatureRankingModel(USERS, MOVIES, embedding_dim=8, tables=tables)


def test_factorisation_initialises_the_embeddings_and_movie_biases():
    tables = _tables()
    model = FeatureRankingModel(USERS, MOVIES, embedding_dim=4, tables=tables)
    np.testing.assert_array_equal(model.user_embedding.numpy(), tables.user_factors)
    np.testing.assert_array_equal(model.movie_embedding.numpy(), tables.movie_factors)
    np.testing.assert_array_equal(model.movie_bias.numpy(), tables.movie_biases)
    assert not model.user_embedding.trainable and not model.user_table.trainable
    assert FeatureRankingModel(USERS, MOVIES, embedding_dim=4, tables=tables, train_factors=True
                               ).movie_embedding.trainable


def test_keras_file_loads_back_with_identical_scores_and_tables(tmp_path):
    model = _model()
    inputs = _inputs([3, 999], [[10, 20, 30], [40, 777, PADDING_ID]])
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, FeatureRankingModel)
    np.testing.assert_array_equal(loaded.movie_table.numpy(), model.movie_table.numpy())
    np.testing.assert_array_equal(loaded(inputs).numpy(), model(inputs).numpy())


def test_config_round_trip_rebuilds_the_same_architecture():
    model = _model()
    clone = FeatureRankingModel.from_config(model.get_config())
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    clone.set_weights(model.get_weights())
    inputs = _inputs([7], [[10, 50]])
    np.testing.assert_array_equal(clone(inputs).numpy(), model(inputs).numpy())


def test_checkpoint_restores_the_tables_too(tmp_path):
    model = _model()
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    other = FeatureRankingModel(USERS, MOVIES, embedding_dim=4, num_genres=len(GENRES))
    tf.train.Checkpoint(model=other).restore(path).assert_existing_objects_matched()
    inputs = _inputs([3], [[10, 20, 30]])
    np.testing.assert_array_equal(other(inputs).numpy(), model(inputs).numpy())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _model()
    version_dir = export.export_saved_model(model, str(tmp_path_factory.mktemp("export")))
    return model, version_dir


def test_export_serves_the_model_scores_in_both_signatures(exported):
    model, version_dir = exported
    loaded = tf.saved_model.load(version_dir)
    user_ids, movie_ids = [3, 999], [[10, 20, 30], [40, 777, PADDING_ID]]
    expected = model(_inputs(user_ids, movie_ids)).numpy()
    served = loaded.signatures["serving_default"](user_id=tf.constant(user_ids, tf.int64),
                                                  movie_id=tf.constant(movie_ids, tf.int64))["scores"]
    np.testing.assert_allclose(served.numpy(), expected, rtol=1e-6)
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "user_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[user])),
        "movie_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[m for m in movies if m != PADDING_ID])),
    })).SerializeToString() for user, movies in zip(user_ids, movie_ids)]
    from_examples = loaded.signatures["tf_example"](serialized=tf.constant(examples))["scores"]
    np.testing.assert_allclose(from_examples.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(export.vocabularies(loaded)["movie_id"], MOVIES)


def test_c_api_session_gives_python_scores(exported, serve_binary):  # noqa: F811
    model, version_dir = exported
    user_ids, movie_ids = np.array([3, 999]), np.array([[10, 20, 30], [40, 777, PADDING_ID]])
    result = _serve_in_c(serve_binary, version_dir, user_ids, movie_ids)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = np.array(result.stdout.split(), np.float32).reshape(movie_ids.shape)
    np.testing.assert_allclose(scores, model(_inputs(user_ids, movie_ids)).numpy(), rtol=0, atol=1e-5)


# --- training --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_name", losses.names())
def test_every_loss_trains_the_model_in_graph_mode(loss_name):
    model = _model(train_factors=True)
    loss = losses.get(loss_name)
    optimizer = keras.optimizers.Adagrad(0.1)
    inputs = _inputs([3, 7], [[10, 20, 30], [40, 50, PADDING_ID]])
    labels = tf.constant([[0.25, 1.0, 0.5], [0.75, 0.0, -1.0]])

    @tf.function(autograph=False)
    def step():
        with tf.GradientTape() as tape:
            value = loss(labels, model(inputs, training=True)) + model.penalty(inputs)
        gradients = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return value, gradients

    before = model.movie_embedding.numpy().copy()
    value, gradients = step()
    assert np.isfinite(float(value)) and all(g is not None for g in gradients)
    assert not np.array_equal(model.movie_embedding.numpy(), before)
    assert np.isfinite(model(inputs).numpy()).all()


def test_penalty_is_l2_times_the_squared_rows_read_per_list():
    model = _model(train_factors=True, l2=0.5)
    inputs = _inputs([3, 7], [[10, 20], [10, PADDING_ID]])
    p, q, b = (model.user_embedding.numpy(), model.movie_embedding.numpy(), model.movie_bias.numpy())
    reads = [(1, 1), (1, 2), (2, 1)]  # (user row, movie row) of the three real items
    expected = 0.5 * sum((p[u] ** 2).sum() + (q[m] ** 2).sum() + b[m] ** 2 for u, m in reads) / 2
    assert float(model.penalty(inputs)) == pytest.approx(expected, rel=1e-5)
    assert float(_model(l2=0.5).penalty(inputs)) == 0.0  # fixed factors are not penalised


# --- in the training run ------------------------------------------------------------------------------------------


def _with_val_and_test_ratings_changed(source: str, target: pathlib.Path, seed: int) -> None:
    """A copy of the ml-25m-shaped folder ``source`` whose validation and test ratings are all 0.5 stars."""
    ratings = tfrank_data.load_ratings("25m", source=source, batch_size=1 << 20)
    _, val, test = tfrank_data.split(ratings, seed=seed)
    held_out = {(int(u), int(m)) for part in (val, test) for batch in part for u, m in
                zip(batch["user_id"].numpy(), batch["movie_id"].numpy())}
    target.mkdir()
    lines = pathlib.Path(source, "ratings.csv").read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        user, movie, rating, timestamp = line.split(",")
        out.append(",".join([user, movie, "0.5" if (int(user), int(movie)) in held_out else rating, timestamp]))
    (target / "ratings.csv").write_text("\n".join(out) + "\n")
    (target / "movies.csv").write_text(pathlib.Path(source, "movies.csv").read_text())


def test_feature_tables_come_from_the_training_ratings_only(synthetic_dir, tmp_path):
    config = training.TrainConfig(dataset="movielens/25m", movielens_path=synthetic_dir, num_lists_per_user=2,
                                  verbose=0)
    changed = tmp_path / "changed"
    _with_val_and_test_ratings_changed(synthetic_dir, changed, config.seed)
    original = training.prepare_data(config).feature_tables
    with_other_held_out = training.prepare_data(
        training.TrainConfig(**{**config.__dict__, "movielens_path": str(changed)})).feature_tables
    for name in ("user_table", "movie_table", "user_factors", "movie_factors", "movie_biases"):
        np.testing.assert_array_equal(getattr(with_other_held_out, name), getattr(original, name), err_msg=name)
    # The control: the same change to training ratings does change the tables.
    ratings = tfrank_data.load_ratings("25m", source=synthetic_dir, batch_size=1 << 20)
    train, _, _ = tfrank_data.split(ratings, seed=config.seed)
    first = next(iter(train))
    user, movie = int(first["user_id"][0]), int(first["movie_id"][0])
    lines = pathlib.Path(synthetic_dir, "ratings.csv").read_text().splitlines()
    control = tmp_path / "control"
    control.mkdir()
    (control / "movies.csv").write_text(pathlib.Path(synthetic_dir, "movies.csv").read_text())
    (control / "ratings.csv").write_text("\n".join(
        [lines[0]] + [",".join(f[:2] + ["0.5"] + f[3:]) if f[:2] == [str(user), str(movie)] else line
                      for line in lines[1:] for f in [line.split(",")]]) + "\n")
    controlled = training.prepare_data(
        training.TrainConfig(**{**config.__dict__, "movielens_path": str(control)})).feature_tables
    assert not np.array_equal(controlled.movie_table, original.movie_table)


def test_synthetic_dataset_builds_tables_with_its_planted_genres():
    config = training.TrainConfig(dataset="synthetic", num_lists_per_user=2, verbose=0)
    data = training.prepare_data(config)
    tables = data.feature_tables
    planted = tfrank_data.synthetic.movie_features(seed=config.seed)
    rows = {movie: row for row, movie in enumerate(planted["movie_id"])}
    np.testing.assert_array_equal(tables.movie_table[1:, 2:],
                                  planted["genres"][[rows[movie] for movie in data.movie_vocabulary]])
    assert tables.user_table.shape == (len(data.user_vocabulary) + 1, 2 + len(tfrank_data.GENRES))
    assert tables.user_factors.shape[1] == config.embedding_dim


def test_tutorial_model_builds_no_tables(synthetic_dir):
    config = training.TrainConfig(dataset="movielens/25m", movielens_path=synthetic_dir, num_lists_per_user=2,
                                  verbose=0, model="tutorial")
    data = training.prepare_data(config)
    assert data.feature_tables is None
    assert type(training.build_model(config, data)).__name__ == "RankingModel"


def _movie_mean_prior_ndcg5(movielens_dir: pathlib.Path, seed: int) -> float:
    """Test nDCG@5 of sorting each test list by the movie's mean training rating (bench/quality.py's prior)."""
    config = training.TrainConfig(movielens_path=str(movielens_dir), seed=seed, model="tutorial", verbose=0)
    train, _, _ = tfrank_data.split(tfrank_data.load_ratings("100k", source=str(movielens_dir)), seed=seed)
    batch = next(iter(train.batch(1 << 20)))
    movie_ids, stars = batch["movie_id"].numpy(), batch["user_rating"].numpy()
    size = int(movie_ids.max()) + 2
    counts = np.bincount(movie_ids, minlength=size)
    means = np.bincount(movie_ids, weights=stars, minlength=size) / np.maximum(counts, 1)
    means[counts == 0] = stars.mean()
    ndcg = metrics.get("ndcg@5")
    for features, labels in training.prepare_data(config).test:
        ndcg.update_state(labels, tf.constant(means[np.clip(features["movie_id"].numpy(), 0, size - 1)], tf.float32))
    return float(ndcg.result())


def test_default_bin_train_run_beats_the_movie_mean_prior_on_movielens(movielens_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.run([sys.executable, str(REPO_ROOT / "bin" / "train.py"), f"--movielens_path={movielens_dir}",
                              f"--model_dir={tmp_path / 'model'}"], capture_output=True, text=True, env=env,
                             timeout=600)
    assert process.returncode == 0, process.stderr
    results = json.loads((tmp_path / "model" / "results.json").read_text())
    run_config = json.loads((tmp_path / "model" / "run_config.json").read_text())
    assert run_config["model"] == "features" and run_config["seed"] == 42
    model_ndcg5 = results["pairwise_hinge"]["test"]["ndcg@5"]
    prior_ndcg5 = _movie_mean_prior_ndcg5(movielens_dir, seed=42)
    assert model_ndcg5 > prior_ndcg5 + 0.005, (model_ndcg5, prior_ndcg5)
