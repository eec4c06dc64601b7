"""The normal-equation solvers against hand-built systems."""

import numpy as np
import pytest
import torch

from latentmap.maps.solvers import IllConditionedWarning, solve_eigh


def test_solve_eigh_drops_eigenvalues_below_size_times_eps_of_the_largest_and_says_so_word_for_word():
    """Cutoff = λ_max · d · eps: with d = 4 it is 8.9e-16, so an eigenvalue of 3e-16 (above λ_max · eps / d) is
    dropped, its direction gets no weight, and the warning counts it; the rest is solved exactly."""
    evals = torch.tensor([1.0, 2.0, 0.5, 3e-16], dtype=torch.float64)
    b = torch.tensor([[1.0, 2.0], [4.0, -2.0], [1.0, 0.5], [1.0, 1.0]], dtype=torch.float64)
    with pytest.warns(IllConditionedWarning) as caught:
        w, condition = solve_eigh(torch.diag(evals), b)
    assert [str(c.message) for c in caught] == [
        "the normal equations are singular: 1 of 4 source directions carry no information (constant or duplicated "
        "latents); returning the minimum-norm map. Use more varied images or alpha > 0."]
    expected = np.array([[1.0, 2.0], [2.0, -1.0], [2.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert condition == pytest.approx(4.0, rel=1e-12)


def test_gcv_alpha_refuses_too_few_pairs_and_latents_that_do_not_vary_word_for_word():
    from latentmap.errors import UnderdeterminedError
    from latentmap.maps.solvers import gcv_alpha

    b = torch.ones(2, 1, dtype=torch.float64)
    with pytest.raises(UnderdeterminedError) as caught:
        gcv_alpha(torch.eye(2, dtype=torch.float64), b, 1.0, 1, intercept=True)
    assert str(caught.value) == ("1 image pairs are too few to choose a ridge penalty by cross-validation; use more "
                                 "images or a fixed alpha")
    with pytest.raises(UnderdeterminedError) as caught:
        gcv_alpha(torch.zeros(2, 2, dtype=torch.float64), b, 1.0, 5, intercept=True)
    assert str(caught.value) == "the source latents do not vary: no map can be chosen by cross-validation"
