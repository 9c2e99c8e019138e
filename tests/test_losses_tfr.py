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
    return value.numpy(), tf.convert_to_tensor(tape.gradient(value, scores)).numpy()


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
