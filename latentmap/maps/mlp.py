"""``MLPMap``: a small nonlinear map between latent spaces, the reference for what nonlinearity buys.

The **linearity gap** of a pair of models is the relocated/own ratio of the linear map minus that
of this MLP: the relocated MSE the map's linearity adds, in units of B's own reconstruction MSE
(not a share: it can exceed 1), rather than information one latent space lacks.

Training: both spaces are standardized (per-variable mean and standard deviation of the training
part); a seeded ``validation_fraction`` of the pairs is held out; Adam on the mean squared error
in minibatches, the learning rate halved when the held-out error stalls for ``patience // 2``
epochs, early stopping after ``patience`` epochs without improvement, and the weights of the best
epoch kept. With ``skip=True`` the network learns the residual of the affine least-squares map
(fitted on the training part; the last layer starts at zero, so training starts from the linear
map and can only be kept if it does better on the held-out pairs).
Seeded: the split, the initial weights and the batch order follow ``seed``. Training runs on the
device of the latents given to ``fit``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, cast

import torch
from torch import nn

from latentmap.maps.base import MapEstimator
from latentmap.maps.checks import Interval, PositiveIntSequence, StrOptions
from latentmap.maps.linear import LinearMap

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class _Net(nn.Module):
    def __init__(self, d_in: int, d_out: int, hidden: Sequence[int], activation: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = d_in
        for h in hidden:
            layers += [nn.Linear(width, int(h)), ACTIVATIONS[activation]()]
            width = int(h)
        layers.append(nn.Linear(width, d_out))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MLPMap(MapEstimator):
    """A multilayer perceptron z_B ≈ f(z_A), trained with a held-out split and early stopping.

    Parameters
    ----------
    hidden
        Widths of the hidden layers (default two of 512).
    activation
        silu (default), relu, gelu or tanh.
    skip
        Learn the residual of the affine least-squares map (the network's output is added to it).
    lr, weight_decay
        Adam's (decoupled weight decay, AdamW, when > 0).
    batch_size
        Minibatch rows.
    max_epochs, patience
        At most this many epochs; stop after ``patience`` epochs without a better held-out error.
    validation_fraction
        Share of the pairs held out for early stopping.
    seed
        Seed of the split, the initial weights and the batch order.

    Attributes
    ----------
    network_
        The torch module, on the training device.
    x_mean_, x_std_, y_mean_, y_std_
        The standardization.
    skip_coef_, skip_intercept_
        The affine part when ``skip``.
    n_features_in_, n_targets_, n_samples_seen_
        Sizes of the fitted problem.
    fit_metrics_
        Held-out latent MSE and R², epochs run, best epoch.
    """

    estimator_name = "mlp"
    _parameter_constraints = {
        "hidden": [PositiveIntSequence()],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "skip": ["boolean"],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "seed": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, hidden: Sequence[int] = (512, 512), activation: str = "silu", skip: bool = True,
                 lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 256, max_epochs: int = 200,
                 patience: int = 12, validation_fraction: float = 0.1, seed: int = 0) -> None:
        self.hidden = hidden
        self.activation = activation
        self.skip = skip
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed

    # ------------------------------------------------------------------ training
    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        n = len(x)
        n_val = int(round(n * self.validation_fraction))
        if n_val < 1 or n - n_val < 2:
            from latentmap.errors import UnderdeterminedError

            raise UnderdeterminedError(f"an MLP map needs enough pairs for a held-out split: got {n} pairs, "
                                       f"validation_fraction={self.validation_fraction} leaves {n_val} held out")
        gen = torch.Generator().manual_seed(int(self.seed))
        perm = torch.randperm(n, generator=gen).to(x.device)
        train, val = perm[n_val:], perm[:n_val]
        x32, y32 = x.to(torch.float32), y.to(torch.float32)
        self.x_mean_, self.x_std_ = _standardizer(x32[train])
        self.y_mean_, self.y_std_ = _standardizer(y32[train])
        xs, ys = (x32 - self.x_mean_) / self.x_std_, (y32 - self.y_mean_) / self.y_std_
        if self.skip:  # the affine least-squares map between the standardized training pairs
            # least squares; ridge with its penalty chosen by cross-validation when the pairs do not determine it
            lin = LinearMap(alpha=0.0 if len(train) > x.shape[1] + 1 else "auto").fit(xs[train].double(),
                                                                                      ys[train].double())
            self.skip_coef_ = torch.as_tensor(lin.coef_.T, dtype=torch.float32, device=x.device)
            self.skip_intercept_ = torch.as_tensor(lin.intercept_, dtype=torch.float32, device=x.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            net = _Net(x.shape[1], y.shape[1], tuple(self.hidden), self.activation).to(x.device)
            if self.skip:
                last = cast(nn.Linear, net.layers[-1])  # _Net ends with its output layer
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
        self.network_ = net
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best, best_state, best_epoch, epoch, stalled = float("inf"), None, 0, 0, 0
        for epoch in range(1, self.max_epochs + 1):
            net.train()
            order = train[torch.randperm(len(train), generator=gen).to(x.device)]
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                loss = (self._standardized(xs[rows]) - ys[rows]).pow(2).mean()
                net.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            val_loss = self._mse(xs[val], ys[val])
            if val_loss < best * (1 - 1e-4):
                best, best_state, best_epoch, stalled = val_loss, copy.deepcopy(net.state_dict()), epoch, 0
            elif epoch - best_epoch >= self.patience:
                break
            else:
                stalled += 1
                if stalled >= max(self.patience // 2, 1):  # halve the learning rate on a plateau
                    stalled = 0
                    for group in opt.param_groups:
                        group["lr"] /= 2
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.network_ = net
        pred = self._forward(x[val]).to(torch.float64)
        yv = y[val].to(torch.float64)
        from latentmap.stats import r2_score

        self.fit_metrics_ = {"n_pairs": n, "n_train": len(train), "n_validation": n_val, "epochs": epoch,
                             "best_epoch": best_epoch, "validation_latent_mse": float((pred - yv).pow(2).mean()),
                             "validation_r2": r2_score(yv, pred)}

    def _standardized(self, xs: torch.Tensor) -> torch.Tensor:
        out = self.network_(xs)
        if self.skip:
            out = out + xs @ self.skip_coef_ + self.skip_intercept_
        return out

    @torch.no_grad()
    def _mse(self, xs: torch.Tensor, ys: torch.Tensor) -> float:
        self.network_.eval()
        total = sum(float((self._standardized(xs[s:s + 8192]) - ys[s:s + 8192]).pow(2).sum())
                    for s in range(0, len(xs), 8192))
        return total / ys.numel()

    # ------------------------------------------------------------------ using the map
    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = self.x_mean_.device
        xs = (x.to(dev, torch.float32) - self.x_mean_) / self.x_std_
        self.network_.eval()
        out = torch.cat([self._standardized(xs[s:s + 8192]) for s in range(0, len(xs), 8192)]) if len(xs) else \
            torch.empty(0, len(self.y_mean_), device=dev)
        return (out * self.y_std_ + self.y_mean_).to(x.device)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        state = {f"network.{k}": v for k, v in self.network_.state_dict().items()}
        state.update(x_mean=self.x_mean_, x_std=self.x_std_, y_mean=self.y_mean_, y_std=self.y_std_)
        if self.skip:
            state.update(skip_coef=self.skip_coef_, skip_intercept=self.skip_intercept_)
        return state

    def _load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        self.x_mean_, self.x_std_ = tensors["x_mean"], tensors["x_std"]
        self.y_mean_, self.y_std_ = tensors["y_mean"], tensors["y_std"]
        if self.skip:
            self.skip_coef_, self.skip_intercept_ = tensors["skip_coef"], tensors["skip_intercept"]
        net = _Net(len(self.x_mean_), len(self.y_mean_), tuple(self.hidden), self.activation)
        try:
            net.load_state_dict({k[len("network."):]: v for k, v in tensors.items() if k.startswith("network.")})
        except RuntimeError as exc:
            from latentmap.errors import CheckpointError

            raise CheckpointError(f"the MLP weights do not fit hidden={tuple(self.hidden)}: {exc}") from None
        self.network_ = net.eval()

    def _sizes(self) -> tuple[int, int]:
        return len(self.x_mean_), len(self.y_mean_)


def _standardizer(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = v.mean(0), v.std(0, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))
