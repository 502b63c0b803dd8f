"""A small seeded Gaussian mixture (EM) for intensity classes: CSF, grey and white matter of a scan.

scikit-learn is not a dependency of the project, and scipy has no mixture model; a 1-D or 2-D
mixture of three Gaussians is a few lines of EM in numpy. The fit is deterministic: the voxels are
subsampled with a seeded generator, and the classes start from equal-count slices of the values
sorted on the ordering feature (no random starts), so the same values and seed give the same fit.
Classes are returned in ascending order of their mean on that feature (on T1c: CSF < GM < WM).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from segan_lib.errors import SeganError

#: the largest number of voxels the mixture is fitted on (a seeded subsample; classifying uses all)
MAX_FIT_SAMPLES = 20_000


@dataclass(frozen=True)
class GaussianMixture:
    """A fitted mixture: K classes in D features, ordered by their mean on feature `order_by`."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, D)
    covariances: np.ndarray  # (K, D, D)
    log_likelihood: float  # mean per fitted sample, at the last iteration
    n_iter: int
    converged: bool
    order_by: int = 0

    def log_densities(self, values: np.ndarray) -> np.ndarray:
        """(N, K): log(weight_k) + log N(x | mean_k, cov_k) for each value."""
        x = _as_2d(values)
        out = np.empty((x.shape[0], len(self.weights)))
        for k in range(len(self.weights)):
            out[:, k] = np.log(self.weights[k]) + _log_normal(x, self.means[k], self.covariances[k])
        return out

    def posteriors(self, values: np.ndarray) -> np.ndarray:
        """(N, K) class probabilities of each value."""
        return _normalise(self.log_densities(values))[0]

    def predict(self, values: np.ndarray) -> np.ndarray:
        """(N,) index of the most probable class (0 = the lowest mean on `order_by`)."""
        return np.argmax(self.log_densities(values), axis=1)


def fit_gaussian_mixture(values: np.ndarray, n_classes: int = 3, *, seed: int = 0, order_by: int = 0,
                         max_samples: int = MAX_FIT_SAMPLES, max_iter: int = 300, tol: float = 1e-6) -> GaussianMixture:
    """Fit a K-class Gaussian mixture with full covariances to `values` ((N,) or (N, D)) by EM.

    Starts from K equal-count groups of the values sorted on feature `order_by`; stops when the mean
    log-likelihood per sample changes by less than `tol` (or after max_iter iterations). A covariance
    is kept above 1e-6 of the feature's variance, so a class on a constant value cannot collapse.
    """
    x = _as_2d(values)
    n, d = x.shape
    if not 0 <= order_by < d:
        raise SeganError(f"order_by {order_by} is not a feature of {d}-feature values")
    if n < 10 * n_classes:
        raise SeganError(f"a {n_classes}-class mixture needs at least {10 * n_classes} values, got {n}")
    if not np.all(np.isfinite(x)):
        raise SeganError("the mixture's values hold NaN or infinite numbers")
    if n > max_samples:
        x = x[np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))]
    floor = 1e-6 * np.maximum(x.var(axis=0), 1e-12)

    groups = np.array_split(np.argsort(x[:, order_by], kind="stable"), n_classes)
    resp = np.zeros((len(x), n_classes))
    for k, idx in enumerate(groups):
        resp[idx, k] = 1.0
    previous = -np.inf
    converged = False
    for iteration in range(1, max_iter + 1):
        weights, means, covs = _m_step(x, resp, floor)
        log_dens = np.stack([np.log(weights[k]) + _log_normal(x, means[k], covs[k]) for k in range(n_classes)], 1)
        resp, log_norm = _normalise(log_dens)
        ll = float(log_norm.mean())
        if abs(ll - previous) < tol:
            converged = True
            break
        previous = ll
    order = np.argsort(means[:, order_by], kind="stable")
    return GaussianMixture(weights[order], means[order], covs[order], ll, iteration, converged, order_by)


def bhattacharyya_distance(mixture: GaussianMixture, a: int, b: int) -> float:
    """Bhattacharyya distance between classes a and b of a mixture (0: the same Gaussian; larger: better
    separated; for two 1-D Gaussians of equal SD it is (difference of means / SD)^2 / 8)."""
    m = mixture.means[a] - mixture.means[b]
    ca, cb = mixture.covariances[a], mixture.covariances[b]
    c = (ca + cb) / 2.0
    term = 0.125 * float(m @ np.linalg.solve(c, m))
    _, logdet_c = np.linalg.slogdet(c)
    _, logdet_a = np.linalg.slogdet(ca)
    _, logdet_b = np.linalg.slogdet(cb)
    return term + 0.5 * (logdet_c - 0.5 * (logdet_a + logdet_b))


def class_separations(mixture: GaussianMixture) -> dict[tuple[int, int], float]:
    """Bhattacharyya distance of every pair of classes (i < j)."""
    return {(i, j): bhattacharyya_distance(mixture, i, j) for i, j in combinations(range(len(mixture.weights)), 2)}


# ---------------------------------------------------------------- EM pieces
def _as_2d(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise SeganError(f"mixture values must be (N,) or (N, D), got shape {np.shape(values)}")
    return x


def _m_step(x: np.ndarray, resp: np.ndarray, floor: np.ndarray):
    nk = resp.sum(axis=0) + 1e-12
    weights = nk / nk.sum()
    means = (resp.T @ x) / nk[:, None]
    # E[x x^T] - mean mean^T per class, in one pass over the samples
    second = np.einsum("nk,nd,ne->kde", resp, x, x, optimize=True) / nk[:, None, None]
    covs = second - np.einsum("kd,ke->kde", means, means) + np.diag(floor)[None]
    return weights, means, covs


def _log_normal(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x - mean).T)
    return -0.5 * (z * z).sum(axis=0) - np.log(np.diag(chol)).sum() - 0.5 * x.shape[1] * np.log(2 * np.pi)


def _normalise(log_dens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors (rows summing to 1) and the log of each row's total, computed stably."""
    top = log_dens.max(axis=1, keepdims=True)
    dens = np.exp(log_dens - top)
    total = dens.sum(axis=1, keepdims=True)
    return dens / total, (np.log(total) + top)[:, 0]
