"""Independent reference computations the number tests compare with: numpy float64, scipy and the field's own
formulas, written here without any latentmap code."""

import numpy as np
from scipy import linalg


def fid_formula(a, b) -> float:
    """pytorch-fid's calculate_frechet_distance on np.mean / np.cov (unbiased) statistics, scipy's sqrtm."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2))
    return float((mu1 - mu2).dot(mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))


def seeded_bootstrap_ratio(a, b, resamples: int, seed: int, chunk: int = 250):
    """mean(a*) / mean(b*) over resamples drawn with numpy's Generator, each set resampled with its own size, in
    chunks of ``chunk`` resamples (a's indices, then b's, per chunk); returns the array of ratios."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        ia = rng.integers(0, len(a), (m, len(a)))
        ib = rng.integers(0, len(b), (m, len(b)))
        out.append(a[ia].mean(1) / b[ib].mean(1))
    return np.concatenate(out)


def percentile_interval(values, level: float = 0.95):
    """(low, high): numpy's percentiles at (1 - level)/2 and (1 + level)/2, e.g. 2.5 and 97.5."""
    return tuple(float(v) for v in np.percentile(values, [50 * (1 - level), 50 * (1 + level)]))


def per_image_mse(x, y) -> np.ndarray:
    """Mean squared difference per image, float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return ((x - y) ** 2).reshape(len(x), -1).mean(1)


def linear_cka_hand(x, y) -> float:
    """||YᵀX||_F² / (||XᵀX||_F ||YᵀY||_F) on centred float64 data."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def sector_codes_hand(latents, variables) -> np.ndarray:
    """Sign-orthant code of each latent: bit j set when z[variables[j]] > 0."""
    z = np.asarray(latents)[:, list(variables)]
    return ((z > 0).astype(np.int64) * (2 ** np.arange(z.shape[1]))).sum(1)


def seeded_paired_bootstrap_difference(own, a, b, resamples: int, seed: int, chunk: int = 100):
    """(Σa* − Σb*) / Σown* over resamples of the images drawn with numpy's Generator, the same indices for the
    three arrays (paired), in chunks of ``chunk`` resamples; returns the array of differences."""
    own, a, b = (np.asarray(v, np.float64) for v in (own, a, b))
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, len(own), (min(chunk, resamples - start), len(own)))
        out.append((a[idx].sum(1) - b[idx].sum(1)) / own[idx].sum(1))
    return np.concatenate(out)
