"""Tests for tfrank.baselines: rating baselines and the statistics of bench/quality.py, on hand-computed inputs."""

import doctest
import math

import numpy as np
import pytest

from tfrank import baselines, metrics
from tfrank.ops import PADDING_LABEL


def test_docstring_examples_hold():
    assert doctest.testmod(baselines).failed == 0


# -- MovieMean -----------------------------------------------------------------------------------------------------


def test_movie_mean_is_each_movies_mean_and_the_global_mean_for_unseen_movies():
    model = baselines.MovieMean().fit([1, 2, 3, 1], [10, 10, 10, 20], [5.0, 4.0, 3.0, 1.0])
    # movie 10: (5 + 4 + 3) / 3 = 4; movie 20: 1; global mean 13 / 4 = 3.25.
    np.testing.assert_allclose(model.predict([9, 9, 9], [10, 20, 30]), [4.0, 1.0, 3.25])


def test_shrunk_movie_mean_adds_pseudo_ratings_at_the_global_mean():
    model = baselines.MovieMean(shrinkage=2.0).fit([1, 2, 3, 1], [10, 10, 10, 20], [5.0, 4.0, 3.0, 1.0])
    np.testing.assert_allclose(model.predict([1, 1], [10, 20]), [(12 + 6.5) / 5, (1 + 6.5) / 3])


def test_predict_broadcasts_users_over_lists():
    model = baselines.MovieMean().fit([1, 2], [10, 20], [5.0, 1.0])
    scores = model.predict(np.array([1, 2])[:, None], np.array([[10, 20], [20, 10]]))
    np.testing.assert_allclose(scores, [[5.0, 1.0], [1.0, 5.0]])


def test_negative_shrinkage_is_refused():
    with pytest.raises(ValueError, match="shrinkage=-1"):
        baselines.MovieMean(shrinkage=-1)


def test_ratings_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="lengths 2, 1 and 1"):
        baselines.MovieMean().fit([1, 2], [10], [3.0])


# -- GenreAffinity -------------------------------------------------------------------------------------------------


def _genre_model(shrinkage):
    # Movie 10: genre 0; movie 20: genre 1; movie 30: genres 0 and 1; movie 40: no known genres.
    genres = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return baselines.GenreAffinity(baselines.MovieMean(), [10, 20, 30], genres, shrinkage=shrinkage)


def test_genre_affinity_is_the_users_shrunk_mean_residual_per_genre():
    # Movie means: 10 -> 4, 20 -> 2, 40 -> 3. User 1's residuals: +1 on movie 10 (genre 0), -1 on movie 20 (genre 1).
    model = _genre_model(shrinkage=1.0).fit([1, 2, 1, 2, 1], [10, 10, 20, 20, 40], [5.0, 3.0, 1.0, 3.0, 3.0])
    # Affinities of user 1: genre 0: 1 / (1 + 1) = 0.5; genre 1: -1 / (1 + 1) = -0.5.
    # Movie 30 is unseen (global mean 3) with both genres: 3 + (0.5 - 0.5) / 2; movie 40 has no genres: its mean.
    np.testing.assert_allclose(model.predict([1, 1, 1, 1], [10, 20, 30, 40]), [4.5, 1.5, 3.0, 3.0])


def test_genre_affinity_without_shrinkage_is_the_plain_mean_residual():
    model = _genre_model(shrinkage=0.0).fit([1, 2, 1, 2], [10, 10, 30, 30], [5.0, 3.0, 4.0, 4.0])
    # Means: 10 -> 4, 30 -> 4. User 1: residual +1 (movie 10: genre 0) and 0 (movie 30: genres 0, 1).
    # Genre 0: (1 + 0) / 2 = 0.5; genre 1: 0 / 1 = 0. Movie 20 (unseen: mean 4, genre 1): 4 + 0.
    np.testing.assert_allclose(model.predict([1, 1, 1], [10, 20, 30]), [4.5, 4.0, 4.25])


def test_unknown_user_gets_the_base_prediction():
    model = _genre_model(shrinkage=1.0).fit([1, 2], [10, 10], [5.0, 3.0])
    np.testing.assert_allclose(model.predict([99], [10]), [4.0])


def test_genre_affinity_keeps_a_fitted_base_when_asked():
    base = baselines.MovieMean().fit([1], [10], [1.0])
    model = baselines.GenreAffinity(base, [10], np.array([[1.0]]), shrinkage=0.0, refit_base=False)
    model.fit([1, 2], [10, 10], [5.0, 3.0])
    # The base still predicts 1 for movie 10, so user 1's residual is 4 and the prediction 1 + 4.
    np.testing.assert_allclose(model.predict([1], [10]), [5.0])


def test_multi_hot_genres_names_an_unknown_genre():
    ids, multi_hot = baselines.multi_hot_genres([7, 3], [["Drama"], ["Comedy", b"Drama"]], ["Comedy", "Drama"])
    np.testing.assert_array_equal(ids, [7, 3])
    np.testing.assert_array_equal(multi_hot, [[0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="genre 'Noir' of movie 3 is not in the vocabulary"):
        baselines.multi_hot_genres([7, 3], [["Drama"], ["Noir"]], ["Comedy", "Drama"])


# -- BiasedMF ------------------------------------------------------------------------------------------------------


def _rank_one_ratings(skip=()):
    users, movies = np.meshgrid(np.arange(6), np.arange(5), indexing="ij")
    user_bias, movie_bias = np.linspace(-0.5, 0.5, 6), np.array([0.3, -0.2, 0.1, 0.0, -0.4])
    user_factor, movie_factor = np.linspace(-1, 1, 6), np.array([0.5, -1.0, 0.8, 0.2, -0.3])
    ratings = 3.0 + user_bias[users] + movie_bias[movies] + user_factor[users] * movie_factor[movies]
    keep = np.ones(users.shape, bool)
    for user, movie in skip:
        keep[user, movie] = False
    return users[keep], movies[keep], ratings[keep], ratings


def test_biased_mf_recovers_a_held_out_rating_of_a_rank_one_matrix():
    users, movies, ratings, full = _rank_one_ratings(skip=[(2, 3)])
    model = baselines.BiasedMF(dim=1, l2=1e-6, iterations=200, seed=1).fit(users, movies, ratings)
    assert model.rmse(users, movies, ratings) < 1e-3
    assert abs(float(model.predict([2], [3])[0]) - full[2, 3]) < 1e-2


def test_biased_mf_movie_parameters_solve_their_ridge_regression():
    rng = np.random.default_rng(0)
    users, movies = rng.integers(0, 8, 60), rng.integers(0, 6, 60)
    ratings = rng.integers(1, 6, 60).astype(float)
    model = baselines.BiasedMF(dim=2, l2=3.0, iterations=3).fit(users, movies, ratings)
    # The last half-step solved each movie's ridge regression given the users: (X^T X + l2 I) w = X^T y with
    # X = [1, p_u] over the movie's raters and y = r - mean - b_u.
    for row, movie in enumerate(model.movies):
        raters = np.searchsorted(model.users, users[movies == movie])
        design = np.concatenate([np.ones((len(raters), 1)), model.user_params[raters, 1:]], axis=1)
        targets = ratings[movies == movie] - model.global_mean - model.user_params[raters, 0]
        solution = np.linalg.solve(design.T @ design + 3.0 * np.eye(3), design.T @ targets)
        np.testing.assert_allclose(model.movie_params[row], solution, atol=1e-10)


def test_biased_mf_predicts_the_global_mean_for_an_unknown_user_and_movie():
    users, movies, ratings, _ = _rank_one_ratings()
    model = baselines.BiasedMF(dim=2, l2=1.0).fit(users, movies, ratings)
    np.testing.assert_allclose(model.predict([100], [100]), [ratings.mean()])


def test_biased_mf_with_the_same_seed_gives_the_same_predictions():
    users, movies, ratings, _ = _rank_one_ratings()
    first = baselines.BiasedMF(dim=3, l2=1.0, seed=5).fit(users, movies, ratings).predict(users, movies)
    second = baselines.BiasedMF(dim=3, l2=1.0, seed=5).fit(users, movies, ratings).predict(users, movies)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("kwargs, message", [({"dim": 0}, "dim=0"), ({"l2": 0.0}, "l2=0.0"),
                                             ({"iterations": 0}, "iterations=0")])
def test_biased_mf_refuses_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        baselines.BiasedMF(**kwargs)


# -- fit_best ------------------------------------------------------------------------------------------------------


def test_fit_best_keeps_the_lowest_validation_rmse():
    train = ([1, 2, 3], [10, 10, 20], [5.0, 5.0, 1.0])  # global mean 11 / 3, movie 10 mean 5
    validation = ([4], [10], [11 / 3])  # the global mean: the most shrinkage wins
    model, point, tried = baselines.fit_best(baselines.MovieMean, [{"shrinkage": s} for s in (0.0, 1.0, 100.0)],
                                             train, validation)
    assert point["shrinkage"] == 100.0 and model.shrinkage == 100.0
    # shrinkage 0: 5 - 11/3 = 4/3; shrinkage 1: (10 + 11/3) / 3 - 11/3 = 8/9.
    np.testing.assert_allclose([t["validation_rmse"] for t in tried[:2]], [4 / 3, 8 / 9])


def test_fit_best_breaks_ties_by_grid_order():
    train, validation = ([1], [10], [3.0]), ([1], [10], [3.0])
    _, point, _ = baselines.fit_best(baselines.MovieMean, [{"shrinkage": 1.0}, {"shrinkage": 2.0}], train, validation)
    assert point["shrinkage"] == 1.0


# -- Statistics ----------------------------------------------------------------------------------------------------


def test_per_list_ndcg_gives_each_lists_ndcg_and_weight():
    labels = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, PADDING_LABEL], [0.0, 0.0, 0.0], [PADDING_LABEL] * 3])
    scores = np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 9.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    values, weights = baselines.per_list_ndcg(labels, scores, topn=2)
    # List 0, ranked 0, 0.5, 1: DCG@2 = 0 + (2^0.5 - 1) / log2(3); ideal 1, 0.5: 1 + (2^0.5 - 1) / log2(3).
    gain = (math.sqrt(2) - 1) / math.log2(3)
    # List 1 (padding ignored): ranked 0, 1: 1 / log2(3); ideal 1. List 2: no gain, 0. List 3: no valid item.
    np.testing.assert_allclose(values, [gain / (1 + gain), 1 / math.log2(3), 0.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(weights, [1.0, 1.0, 1.0, 0.0])
    metric = metrics.get("ndcg@2")
    metric.update_state(labels, scores)
    assert abs(float(metric.result()) - np.sum(values * weights) / np.sum(weights)) < 1e-6


def test_t_interval_is_the_mean_and_students_t_half_width():
    mean, low, high = baselines.t_interval([1.0, 2.0, 3.0])
    half = 4.3027 * 1.0 / math.sqrt(3)  # t(0.975, 2 df) * sample std / sqrt(n)
    assert mean == 2.0 and abs(low - (2 - half)) < 1e-9 and abs(high - (2 + half)) < 1e-9


def test_t_interval_of_one_value_has_no_bounds():
    mean, low, high = baselines.t_interval([0.5])
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize("degrees, quantile", [(4, 2.7764), (30, 2.0423), (60, 2.0003), (120, 1.9799)])
def test_t_quantile_matches_the_t_table(degrees, quantile):
    assert abs(baselines.t_quantile_975(degrees) - quantile) < 2e-4


def test_paired_bootstrap_of_constant_differences_is_that_constant():
    mean, low, high = baselines.paired_bootstrap([np.full(5, 0.01), np.full(9, 0.01)], num_resamples=50)
    assert abs(mean - 0.01) < 1e-12 and abs(low - 0.01) < 1e-12 and abs(high - 0.01) < 1e-12


def test_paired_bootstrap_averages_the_seeds_weighted_means():
    differences = [np.array([1.0, 0.0, 0.0, 0.0]), np.array([2.0, 4.0])]
    weights = [np.array([1.0, 1.0, 1.0, 0.0]), np.array([1.0, 1.0])]
    mean, low, high = baselines.paired_bootstrap(differences, weights, num_resamples=500)
    # Seed 0: (1 + 0 + 0) / 3 (the last list weighs 0); seed 1: 3. Each seed counts once, whatever its size.
    assert abs(mean - (1 / 3 + 3) / 2) < 1e-12
    assert low < mean < high


def test_paired_bootstrap_interval_has_the_width_of_the_standard_error():
    differences = np.random.default_rng(1).normal(0.02, 0.1, size=2000)
    mean, low, high = baselines.paired_bootstrap([differences], num_resamples=4000, seed=3)
    standard_error = differences.std() / math.sqrt(len(differences))
    assert abs((high - low) / (2 * 1.96 * standard_error) - 1) < 0.1
    assert abs((low + high) / 2 - mean) < 0.3 * standard_error


def test_paired_bootstrap_refuses_differences_and_weights_of_different_shapes():
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(2,\)"):
        baselines.paired_bootstrap([np.zeros(3)], [np.ones(2)])
