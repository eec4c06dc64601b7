"""Findings sentences from hand-built results: every number distinct, so a sentence that quotes the wrong one (the
real/own ratio for the support/own one, the best own MSE for the worst, an interval's ends swapped) fails."""

import numpy as np
import pytest

from latentmap.evaluation.expressiveness import ExpressivenessResult, ModelExpressiveness, RatioCI, SetScores
from latentmap.evaluation.fidelity import FidelityResult, FidelityRow
from latentmap.report import expressiveness as expressiveness_report
from latentmap.report.coverage import fidelity_findings
from latentmap.report.findings import expressiveness_findings, relocation_findings


def _set(key, encoder, refined, refined_outside=(0, 0)):
    n = len(encoder)
    r = len(refined)
    return SetScores(key, f"{key} images",
                     {"mse": np.array(encoder), "ssim": np.ones(n), "distance": np.ones(n), "outside": np.zeros(n, bool)},
                     np.arange(r), {"mse": np.array(refined), "ssim": np.ones(r), "distance": np.ones(r),
                                    "outside": np.array(refined_outside, bool)})


def _model(name, kind, encoder, refined, ratios, support_outside=(0, 0)):
    sets = {k: _set(k, encoder[k], refined[k], support_outside if k == "support" else (0, 0)) for k in encoder}
    return ModelExpressiveness(name, kind, 8, "prior", {"typical": 1.0}, sets,
                               {k: RatioCI(*v) for k, v in ratios.items()})


@pytest.fixture
def hand_result():
    alpha = _model("alpha", "gan", {"own": [0.01, 0.03], "real": [0.05, 0.07], "support": [0.1, 0.3]},
                   {"own": [0.001, 0.003], "real": [0.01, 0.01], "support": [0.02, 0.04]},
                   {"support/own": (10.0, 8.4, 12.6), "real/own": (3.0, 2.2, 3.9)}, support_outside=(1, 0))
    beta = _model("beta", "vae", {"own": [0.02, 0.02], "real": [0.04, 0.02], "support": [0.05, 0.13]},
                  {"own": [0.006, 0.01], "real": [0.01, 0.02], "support": [0.04, 0.06]},
                  {"support/own": (4.5, 3.1, 6.0), "real/own": (1.5, 1.2, 1.9)})
    return ExpressivenessResult([beta, alpha], {"steps": 50})


def test_expressiveness_findings_quote_each_ratio_in_its_own_place(hand_result):
    text = expressiveness_report.findings(hand_result)
    assert text[0] == ("alpha (gan) reconstructs its own samples at MSE 0.0200 through its encoder, but support-set "
                       "images at 0.200, 10.0 times worse (95% interval 8.40–12.6) and real test images at 0.0600, "
                       "3.00 times worse (95% interval 2.20–3.90).")
    assert text[1] == ("beta (vae) reconstructs its own samples at MSE 0.0200 through its encoder, but support-set "
                       "images at 0.0900, 4.50 times worse (95% interval 3.10–6.00) and real test images at 0.0300, "
                       "1.50 times worse (95% interval 1.20–1.90).")


def test_refinement_finding_quotes_the_worst_own_mse(hand_result):
    sentences = expressiveness_report.findings(hand_result)
    refinement = next(s for s in sentences if s.startswith("After"))
    # own refined MSE: alpha 0.002, beta 0.008; the sentence bounds every model's, so it quotes the worst
    assert refinement == ("After 50 steps of gradient refinement own samples reach MSE 0.00800 or less, so ratios lose "
                          "their meaning; support-set images (the 2 refined ones, encoder MSE → refined MSE of the "
                          "same images) stay at: alpha 0.200 → 0.0300, beta 0.0900 → 0.0500.")
    drift = next(s for s in sentences if s.startswith("Refined support-set latents"))
    assert drift.endswith(": alpha 50%.")  # beta's refined support latents all lie inside


def test_leaderboard_prints_each_interval_low_to_high(hand_result):
    board = expressiveness_report.leaderboard_display(hand_result).set_index("Model")
    assert board.loc["alpha", "support/own (95% CI)"] == "10.0 (8.40–12.6)"
    assert board.loc["alpha", "real/own (95% CI)"] == "3.00 (2.20–3.90)"
    assert board.loc["beta", "Encoder MSE, support-set images"] == "0.0900"


def test_saved_findings_of_the_leaderboard_and_of_a_relocation():
    rows = [{"model": "b", "support_over_own": 2.5, "support_over_own_low": 1.75, "support_over_own_high": 3.5},
            {"model": "a", "support_over_own": 9.71, "support_over_own_low": 7.25, "support_over_own_high": 13.2}]
    assert expressiveness_findings(rows) == [
        "Support-set images reconstruct worse than each model's own samples (encoder MSE ratio, 95% interval): "
        "a 9.71 (7.25–13.2), b 2.50 (1.75–3.50) (the paper's StyleGAN on CelebA: 9.7; Asperti & Tonelli 2023, "
        "Comparing the latent space of generative models)."]
    r = {"source": "a", "target": "b", "type": 1, "relocated_mse": 0.0123, "target_mse": 0.00456, "ratio": 2.7,
         "ratio_low": 2.41, "ratio_high": 3.05, "n_images": 10000, "latent_r2": 0.912, "cycle_ratio": 1.8,
         "by_label": [{"ratio": 1.2, "name": "Shirt"}, {"ratio": 4.5, "name": "Bag"}, {"ratio": 2.0, "name": "Coat"}]}
    assert relocation_findings(r) == [
        "a → b (type 1): relocated MSE 0.0123 against b's own 0.00456, ratio 2.70 (95% interval 2.41–3.05), on "
        "10,000 images.",
        "Latent R² 0.912; cycle A → B → A at 1.80 times A's own error.",
        "By label the ratio runs from 1.20 (Shirt) to 4.50 (Bag)."]


def test_fidelity_findings_quote_each_row():
    rows = [FidelityRow("far", "x", 100, 0.31, 0.12, 0.4, 0.22, 8.5),
            FidelityRow("near", "y", 100, 0.81, 0.77, 0.9, 0.66, 1.25),
            FidelityRow("real train images", "z", 100, 0.93, 0.91, 1.0, 0.95, 0.125)]
    text = fidelity_findings(FidelityResult("the space", "FD in s space", 5, 100, "real", rows))
    assert text == ["In the space (k = 5): near precision 0.810, recall 0.770, coverage 0.660, FD in s space 1.25; "
                    "far precision 0.310, recall 0.120, coverage 0.220, FD in s space 8.50.",
                    "Real training images score precision 0.930, recall 0.910, coverage 0.950, FD in s space 0.125: the "
                    "scores of a generator that matched the data."]
