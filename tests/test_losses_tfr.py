"""tfrank losses give TF Ranking 0.5.5's values and gradients, to 1e-5, on the recorded fixtures.

The fixtures come from tests/fixtures/make_loss_fixtures.py (run in the TF 2.15 + tensorflow-ranking venv).
"""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tfrank import losses
from tfrank.losses import lambda_weights

FIXTURES = json.loads((pathlib.Path(__file__).parent / "fixtures" / "tfr_losses.json").read_text())
CASES = FIXTURES["cases"]
FUNCTIONS = {
    "identity": lambda_weights.identity,
    "inverse": lambda_weights.inverse,
    "pow_minus_1": lambda_weights.pow_minus_1,
    "log2_inverse": lambda_weights.log2_inverse,
}


def build_loss(case):
    args = dict(case["args"])
    spec = args.get("lambda_weight")
    if spec is not None:
        lw_args = {key: FUNCTIONS[value] if key.endswith("_fn") else value for key, value in spec["args"].items()}
        args["lambda_weight"] = getattr(losses, spec["class"])(**lw_args)
    return getattr(losses, case["loss"])(**args)


def value_and_grad(loss, case):
    """The loss's value and its gradient w.r.t. the scores (the flat values for ragged cases), as numpy arrays."""
    value, grad = value_and_grad_tensors(loss, case)
    return value.numpy(), tf.convert_to_tensor(grad).numpy()


def value_and_grad_tensors(loss, case):
    labels = tf.constant(case["labels"], tf.float32)
    scores = tf.constant(case["scores"], tf.float32)
    weights = case.get("weights")
    weights = None if weights is None else tf.constant(weights, tf.float32)
    lengths = case.get("row_lengths")
    if lengths is not None:
        labels = tf.RaggedTensor.from_tensor(labels, lengths=lengths)
        scores = tf.RaggedTensor.from_tensor(scores, lengths=lengths).flat_values
        if weights is not None and weights.shape[1] != 1:
            weights = tf.RaggedTensor.from_tensor(weights, lengths=lengths)
    with tf.GradientTape() as tape:
        tape.watch(scores)
        predictions = scores if lengths is None else tf.RaggedTensor.from_row_lengths(scores, lengths)
        value = loss(labels, predictions, weights)
    return value, tape.gradient(value, scores)


def case_id(case):
    extra = case["args"].get("lambda_weight")
    extra = f"-{extra['class']}{extra['args']}" if extra else ""
    return f"{case['loss']}-{case['tag']}{extra}"


def _all_padding_listmle(case):
    return case["loss"] == "ListMLELoss" and case["tag"] == "all_padding_batch"


@pytest.mark.parametrize("case", [c for c in CASES if not _all_padding_listmle(c)], ids=case_id)
def test_value_and_gradient_match_tf_ranking(case):
    value, grad = value_and_grad(build_loss(case), case)
    np.testing.assert_allclose(value, case["value"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, np.asarray(case["grad"]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if _all_padding_listmle(c)], ids=case_id)
def test_list_mle_all_padding_is_zero_where_tf_ranking_gives_log_factorial(case):
    value, grad = value_and_grad(build_loss(case), case)
    assert value == 0.0
    np.testing.assert_array_equal(grad, 0.0)
    np.testing.assert_allclose(case["value"], np.log(24.0), rtol=1e-5)  # TF Ranking: log(4!) per list, 2 lists / 2


def test_gumbel_noise_equals_the_reference_stateless_draw():
    noise = losses.GumbelApproxNDCGLoss(seed=5).gumbel_noise([2, 3, 4])
    np.testing.assert_allclose(noise.numpy(), FIXTURES["gumbel_noise_seed5_shape_2_3_4"], rtol=1e-5, atol=1e-5)


CATALOGUE = json.loads((pathlib.Path(__file__).parent / "fixtures" / "tfr_catalogue.json").read_text())
CATALOGUE_CASES = CATALOGUE["losses"]


def graph_value_and_grad(loss, case):
    """``value_and_grad`` traced inside one ``tf.function`` (the way ``fit`` runs a loss)."""
    return tf.function(lambda: [tf.convert_to_tensor(x) for x in value_and_grad_tensors(loss, case)])()


def _topk_beyond_list_size(case):
    return (case["args"].get("topk") or 0) > len(case["labels"][0])


@pytest.mark.parametrize("case", [c for c in CATALOGUE_CASES if not _topk_beyond_list_size(c)], ids=case_id)
def test_catalogue_loss_value_and_gradient_match_tf_ranking(case):
    value, grad = value_and_grad(build_loss(case), case)
    np.testing.assert_allclose(value, case["value"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, np.asarray(case["grad"]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CATALOGUE_CASES if c["tag"] in ("padding_item_weights", "ragged")],
                         ids=case_id)
def test_catalogue_loss_value_and_gradient_match_tf_ranking_in_graph_mode(case):
    value, grad = graph_value_and_grad(build_loss(case), case)
    np.testing.assert_allclose(value.numpy(), case["value"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad.numpy(), np.asarray(case["grad"]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CATALOGUE_CASES if _topk_beyond_list_size(c)], ids=case_id)
def test_coupled_rank_distil_topk_beyond_the_list_is_the_whole_list_where_tf_ranking_broadcasts(case):
    # TF Ranking broadcasts a [topk] denominator against [list_size] numerators here (a negative "loss").
    assert case["value"] < 0.0
    value, grad = value_and_grad(build_loss(case), case)
    whole_list = dict(case, args={k: v for k, v in case["args"].items() if k != "topk"})
    expected_value, expected_grad = value_and_grad(build_loss(whole_list), whole_list)
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6)
    assert value >= 0.0
