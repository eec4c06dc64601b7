"""The VAE losses of latentmap.losses: the KL term in closed form and the balanced loss's gamma."""

import pytest
import torch

from latentmap.losses import BalancedVAELoss, kl_divergence


def test_kl_matches_closed_form():
    mu = torch.tensor([[0.0, 1.0]])
    logvar = torch.tensor([[0.0, torch.log(torch.tensor(4.0))]])
    expected = 0.5 * (1.0 + 4.0 - 1.0 - torch.log(torch.tensor(4.0)))
    torch.testing.assert_close(kl_divergence(mu, logvar), expected.reshape(1))


def test_balanced_loss_gamma_only_decreases_and_normalizes():
    loss = BalancedVAELoss(momentum=0.0)
    x = torch.zeros(4, 1, 2, 2)
    mu = logvar = torch.zeros(4, 3)
    first = loss(x, torch.full_like(x, 0.5), mu, logvar)  # mse 0.25
    assert first.gamma == pytest.approx(0.25)
    # reconstruction term = n_pixels/2 * mse/gamma = 2 * 1 when mse == gamma
    assert float(first.loss) == pytest.approx(2.0)
    second = loss(x, torch.full_like(x, 0.9), mu, logvar)  # worse batch: gamma stays
    assert second.gamma == pytest.approx(0.25)
    third = loss(x, torch.full_like(x, 0.1), mu, logvar)
    assert third.gamma == pytest.approx(0.01)


def test_gamma_floor_bounds_gamma():
    loss = BalancedVAELoss(momentum=0.0, gamma_floor=0.05)
    x = torch.zeros(2, 1, 2, 2)
    parts = loss(x, torch.full_like(x, 0.1), torch.zeros(2, 3), torch.zeros(2, 3))  # mse 0.01
    assert parts.gamma == pytest.approx(0.05)
