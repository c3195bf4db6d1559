"""Classical (non-learned) denoisers: the baselines the network is compared with.

Every method has the same signature::

    fn(image: np.ndarray, sigma: float | None) -> np.ndarray

``image`` is a 2-D float image on the [0, 1] scale (noisy values may lie slightly outside),
``sigma`` the std of additive white Gaussian noise on the same scale (25/255 is
"sigma 25"); ``None`` estimates it with :func:`xraydenoise.noise.estimate_gaussian_sigma`.
The result is float32 of the same shape. Results are *not* clipped to [0, 1]: the methods
are (nearly) range-preserving already and whoever writes a file clips there.
``sigma == 0`` returns a copy of the input.

How the parameter rules were chosen
-----------------------------------
Each ``_*_rule`` function below was tuned once by a small grid search for the best mean
PSNR on 6 crops of 256x256 px (centre and upper-left-quarter crops) of three dev images,
one per source (``nih/nih_00002300_008.png``, ``kermany/kermany_NORMAL2-IM-1004-0001.png``,
``fracatlas/fracatlas_IMG0001774.png``), at sigma 10, 25 and 50 /255, and a smooth rule
was fitted through the three optima. These images are not used by the tests that
compare methods. The grids and the results are in the docstring of each rule. Note that
radiographs are smooth at the pixel scale, so a PSNR-tuned Gaussian blur is a strong
baseline (it over-smooths fine detail, which PSNR rewards little).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pywt
from scipy import ndimage

from xraydenoise.errors import ConfigError, MissingDependencyError
from xraydenoise.noise import (
    CorrelatedNoise,
    GaussianNoise,
    Kernel,
    NoiseModel,
    PoissonGaussianNoise,
    bm3d_psd,
    estimate_gaussian_sigma,
    generalized_anscombe,
    inverse_generalized_anscombe,
)

__all__ = [
    "CLASSICAL_METHODS",
    "ClassicalMethod",
    "bm3d_denoise",
    "denoise_classical",
    "gaussian_denoise",
    "get_classical",
    "median_denoise",
    "nlm_denoise",
    "tv_denoise",
    "tv_rof",
    "wavelet_denoise",
]

ClassicalMethod = Callable[[np.ndarray, "float | None"], np.ndarray]

BM3D_MISSING = "bm3d is not installed: pip install 'xraydenoise[bm3d]' (non-commercial licence)"


# --------------------------------------------------------------------------- helpers


def _prepare(image: np.ndarray, sigma: float | None) -> tuple[np.ndarray, float]:
    """Validate the input; return it as a float32 array and the (estimated) sigma."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D (grey-level) image, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"image must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if arr.size == 0:
        raise ValueError("image is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or infinite values")
    if sigma is None:
        sigma = estimate_gaussian_sigma(arr) if min(arr.shape) >= 3 else 0.0
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    return arr, sigma


def _grey(sigma: float) -> float:
    """Sigma in grey levels of 255 (the unit the rules are written in)."""
    return sigma * 255.0


# --------------------------------------------------------------------------- Gaussian filter


def _gaussian_rule(sigma: float) -> float:
    """Filter std in pixels: ``0.37 * sigma255 ** 0.6`` (1.47 px at 10, 2.56 at 25, 3.88 at 50).

    Grid {1, 1.5, 2, 2.5, 3, 4} px on the tuning crops, mean PSNR: sigma 10 best 1.5 px (37.86 dB;
    2 px 37.34), sigma 25 best 2.5 px (34.86; 3 px 34.78), sigma 50 best 4 px (32.75).
    """
    return 0.37 * _grey(sigma) ** 0.6


def gaussian_denoise(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Gaussian blur (``scipy.ndimage.gaussian_filter``, reflect boundary), std from sigma."""
    arr, sigma = _prepare(image, sigma)
    if sigma == 0:
        return arr.copy()
    return ndimage.gaussian_filter(arr.astype(np.float64), _gaussian_rule(sigma), mode="reflect").astype(
        np.float32
    )


# --------------------------------------------------------------------------- median filter


def _median_rule(sigma: float) -> int:
    """Window size in pixels: 3, 5, 7, 9 or 11, switching at sigma 7, 12, 18 and 26 /255.

    Grid {3, 5, 7, 9, 11} at sigma 5, 10, 15, 20, 25, 35, 50 on the tuning crops; the
    thresholds are where the best size changes. Mean PSNR (dB) for sizes 3/5/7/9/11:
    sigma 10: 35.0/36.7/36.6/36.0/35.3; sigma 25: 27.8/31.4/33.0/33.6/33.7;
    sigma 50: 21.9/26.0/28.5/30.0/30.9. A 3 or 5 px median is 2-9 dB worse than this at
    sigma 25-50 and would make a straw-man baseline. The size stops at 11 px.
    """
    s = _grey(sigma)
    for size, upper in ((3, 7.0), (5, 12.0), (7, 18.0), (9, 26.0)):
        if s < upper:
            return size
    return 11


def median_denoise(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Median filter (``scipy.ndimage.median_filter``, reflect boundary), size from sigma."""
    arr, sigma = _prepare(image, sigma)
    if sigma == 0:
        return arr.copy()
    return ndimage.median_filter(arr, size=_median_rule(sigma), mode="reflect").astype(np.float32)


# --------------------------------------------------------------------------- wavelets

_WAVELET = "sym8"
_WAVELET_MAX_LEVELS = 5


def _wavelet_levels(shape: tuple[int, ...]) -> int:
    """Decomposition levels: up to 5, never more than the image allows for sym8."""
    max_level = pywt.dwt_max_level(min(shape), pywt.Wavelet(_WAVELET).dec_len)
    return int(max(1, min(_WAVELET_MAX_LEVELS, max_level)))


def wavelet_denoise(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """BayesShrink soft thresholding (``skimage.restoration.denoise_wavelet``), sym8.

    The number of levels matters more than the wavelet: skimage's default (max level - 3)
    leaves sym8 with 1 level on a 256 px image (26.1 dB at sigma 25 on the tuning crops,
    34.6 dB with 4 levels). On the 256 px tuning crops sym8 with 4 levels (the most that
    size allows) was the best of haar/db2/sym4/sym8 x 2-6 levels at sigma 10, 25 and 50
    (37.84, 34.62, 32.22 dB). Larger images get up to 5 levels.
    """
    from skimage.restoration import denoise_wavelet

    arr, sigma = _prepare(image, sigma)
    if sigma == 0:
        return arr.copy()
    with warnings.catch_warnings():
        # An image shorter than the filter (16 px for sym8) still gets one level, whose
        # boundary effects pywt warns about: expected there, and not the user's concern.
        warnings.filterwarnings("ignore", message="Level value of .* is too high", category=UserWarning)
        out = denoise_wavelet(
            arr.astype(np.float64),
            sigma=sigma,
            wavelet=_WAVELET,
            mode="soft",
            wavelet_levels=_wavelet_levels(arr.shape),
            method="BayesShrink",
            rescale_sigma=True,
        )
    return np.asarray(out, dtype=np.float32)


# --------------------------------------------------------------------------- total variation


def tv_rof(
    image: np.ndarray,
    weight: float,
    *,
    rms_tol: float = 0.5 / 255,
    max_num_iter: int = 3000,
) -> np.ndarray:
    """Total-variation (ROF) denoising solved to a guaranteed accuracy.

    Minimises ``1/2 ||u - f||^2 + weight * TV(u)`` (isotropic TV, forward differences,
    Neumann boundary), the *same* problem and discretisation as
    ``skimage.restoration.denoise_tv_chambolle(f, weight)``, with the fast gradient
    projection (FGP) algorithm of Beck & Teboulle (IEEE TIP 18(11), 2009) on the dual.

    Why not ``denoise_tv_chambolle`` itself: its stopping rule compares successive values of
    an energy that is not monotone in the iterations, so it stops after a few iterations
    whatever ``eps`` (1e-5 or 1e-6) is; and run to convergence (``eps=0``) it needs about
    4000 iterations (30 s) on a 1024x1024 radiograph. FGP converges as O(1/k^2) and stops
    on the duality gap ``G = weight * sum(|grad u| - grad u . p)``, which bounds the error:
    ``1/2 ||u - u*||^2 <= G``. Stopping at ``G <= 1/2 * n * rms_tol^2`` guarantees an RMS
    error of at most ``rms_tol`` (default half a grey level; in practice 20x smaller). A
    1024x1024 image takes about 400 iterations (5 s). tests/unit/test_classical.py checks
    the result against ``denoise_tv_chambolle`` run to convergence.
    """
    f = np.asarray(image, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {f.shape}")
    if weight <= 0 or min(f.shape) < 2:
        return f.astype(np.float32)
    dt = np.float32  # float32 iterations are 3x faster; the gap is summed in float64
    h, w = f.shape
    fd = f.astype(dt)
    p = np.zeros((2, h, w), dt)  # dual variable (|p| <= 1 pointwise)
    r = np.zeros_like(p)  # extrapolated dual point
    scratch = np.zeros_like(p)
    u = np.empty((h, w), dt)
    norm = np.empty((h, w), dt)
    step, wd = dt(1.0 / (8.0 * weight)), dt(weight)
    tol = 0.5 * f.size * rms_tol**2

    def primal(q: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = f + weight * div q`` (div = -grad^T)."""
        out[...] = 0
        out[:-1, :] += q[0, :-1, :]
        out[1:, :] -= q[0, :-1, :]
        out[:, :-1] += q[1, :, :-1]
        out[:, 1:] -= q[1, :, :-1]
        out *= wd
        out += fd
        return out

    def grad(v: np.ndarray, g: np.ndarray) -> np.ndarray:
        np.subtract(v[1:, :], v[:-1, :], out=g[0, :-1, :])
        g[0, -1, :] = 0
        np.subtract(v[:, 1:], v[:, :-1], out=g[1, :, :-1])
        g[1, :, -1] = 0
        return g

    t = 1.0
    for k in range(1, max_num_iter + 1):
        primal(r, u)
        grad(u, scratch)
        scratch *= step
        scratch += r
        np.hypot(scratch[0], scratch[1], out=norm)
        np.maximum(norm, 1, out=norm)
        scratch /= norm  # projection onto |p| <= 1
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        np.subtract(scratch, p, out=r)
        r *= dt((t - 1.0) / t_next)
        r += scratch
        p, scratch, t = scratch, p, t_next
        if k % 10 == 0:
            g = grad(primal(p, u), scratch)  # scratch is overwritten next iteration anyway
            np.hypot(g[0], g[1], out=norm)
            gap = weight * (
                float(norm.sum(dtype=np.float64)) - float(np.einsum("kij,kij->", g, p, dtype=np.float64))
            )
            if gap <= tol:
                break
    return primal(p, u).astype(np.float32)


def _tv_rule(sigma: float) -> float:
    """ROF weight: ``weight = sigma * (0.7 + 0.01 * sigma255)`` (0.8 sigma at 10, 0.95 sigma
    at 25, 1.2 sigma at 50).

    Grid weight/sigma in {0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.3} on the tuning crops, converged
    ROF, mean PSNR (dB): sigma 10: 0.8 -> 38.10, 1.0 -> 38.03; sigma 25: 0.8 -> 34.25,
    1.0 -> 34.91, 1.3 -> 34.53; sigma 50: 1.0 -> 32.42, 1.3 -> 32.38.
    """
    return sigma * (0.7 + 0.01 * _grey(sigma))


def tv_denoise(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Total-variation (ROF) denoising with the weight tied to sigma, solved by :func:`tv_rof`."""
    arr, sigma = _prepare(image, sigma)
    if sigma == 0:
        return arr.copy()
    return tv_rof(arr, _tv_rule(sigma))


# --------------------------------------------------------------------------- non-local means

_NLM_PATCH_SIZE = 7
_NLM_PATCH_DISTANCE = 6


_NLM_H_KNOTS = ((10.0, 0.6), (25.0, 0.75), (50.0, 1.3))


def _nlm_rule(sigma: float) -> float:
    """Filter strength ``h = k * sigma`` with ``k`` interpolated linearly between the tuned
    optima 0.6 (sigma 10), 0.75 (sigma 25) and 1.3 (sigma 50), constant outside.

    Grid patch {5, 7} x distance {6, 10} x h/sigma {0.4 ... 1.7} on the tuning crops: 7x7
    patches with distance 6 were best at every level (by 0.03-0.3 dB over 5x5; distance 10
    was 0.3-0.8 dB worse and 2.5x slower). Mean PSNR (dB) at the optimum: sigma 10: 38.31
    (h = 0.6 sigma), sigma 25: 34.61 (0.7-0.8 sigma), sigma 50: 32.25 (1.2-1.7 sigma, flat).
    """
    xs, ks = zip(*_NLM_H_KNOTS)
    return float(np.interp(_grey(sigma), xs, ks)) * sigma


def nlm_denoise(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Non-local means (``skimage.restoration.denoise_nl_means``, fast mode, 7x7 patches,
    search distance 6), with ``sigma`` passed so the expected noise distance is removed."""
    from skimage.restoration import denoise_nl_means

    arr, sigma = _prepare(image, sigma)
    if sigma == 0:
        return arr.copy()
    out = denoise_nl_means(
        arr.astype(np.float64),
        patch_size=_NLM_PATCH_SIZE,
        patch_distance=_NLM_PATCH_DISTANCE,
        h=_nlm_rule(sigma),
        sigma=sigma,
        fast_mode=True,
    )
    return np.asarray(out, dtype=np.float32)


# --------------------------------------------------------------------------- BM3D


def _import_bm3d():
    try:
        import bm3d
    except ImportError as exc:
        if exc.name == "bm3d":
            raise MissingDependencyError(BM3D_MISSING) from None
        raise MissingDependencyError(
            f"bm3d is installed but cannot be imported ({exc}): "
            "pip install --force-reinstall 'xraydenoise[bm3d]'"
        ) from exc
    # bm3d's coloured-noise path (a PSD array) calls np.trapz, which numpy 2 removed; the
    # alias is the same function under its new name.
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    return bm3d


def bm3d_denoise(image: np.ndarray, sigma: float | None = None, *, psd: np.ndarray | None = None) -> np.ndarray:
    """BM3D (``bm3d.bm3d(image, sigma_psd=...)``, both stages, default profile).

    ``psd`` (keyword-only) is the noise power spectrum of correlated noise, an array of the
    image's shape in bm3d's scaling (``|FFT(kernel)|^2 * N * variance``, what
    :func:`xraydenoise.noise.bm3d_psd` and ``model.psd(shape)`` give); ``sigma`` is then
    ignored. Without it the noise is white with std ``sigma``.

    The ``bm3d`` package is optional (non-commercial licence): without it this raises
    :class:`~xraydenoise.errors.MissingDependencyError`.

    >>> from xraydenoise.noise import CorrelatedNoise, GaussianKernel
    >>> model = CorrelatedNoise(GaussianKernel(1.0), s=10 / 255)
    >>> noisy = model.sample(np.full((32, 32), 0.5), seed=0)
    >>> bm3d_denoise(noisy, psd=model.psd(noisy.shape)).shape   # doctest: +SKIP
    (32, 32)
    """
    bm3d = _import_bm3d()
    if psd is not None:
        arr, _ = _prepare(image, 0.0)
        psd = np.asarray(psd, dtype=np.float64)
        if psd.shape != arr.shape:
            raise ValueError(f"the noise PSD must have the image's shape {arr.shape}, got {psd.shape}")
        if not np.all(np.isfinite(psd)) or np.any(psd < 0):
            raise ValueError("the noise PSD must be finite and >= 0")
        if not np.any(psd > 0):
            return arr.copy()
        out = bm3d.bm3d(arr.astype(np.float64), sigma_psd=psd)
        return np.asarray(out, dtype=np.float32).reshape(arr.shape)
    arr, sigma = _prepare(image, sigma)
    if sigma == 0:
        return arr.copy()
    out = bm3d.bm3d(arr.astype(np.float64), sigma_psd=sigma)
    return np.asarray(out, dtype=np.float32).reshape(arr.shape)


# --------------------------------------------------------------------------- registry

CLASSICAL_METHODS: dict[str, ClassicalMethod] = {
    "gaussian": gaussian_denoise,
    "median": median_denoise,
    "wavelet": wavelet_denoise,
    "tv": tv_denoise,
    "nlm": nlm_denoise,
    "bm3d": bm3d_denoise,
}


def get_classical(name: str) -> ClassicalMethod:
    """The method called ``name`` (case-insensitive); unknown names raise ConfigError."""
    key = name.strip().lower() if isinstance(name, str) else name
    try:
        return CLASSICAL_METHODS[key]
    except (KeyError, TypeError):
        known = ", ".join(sorted(CLASSICAL_METHODS))
        raise ConfigError(f"unknown classical method {name!r}: choose one of {known}") from None


def _with_kernel(name: str, fn: ClassicalMethod, image: np.ndarray, sigma: float, kernel: Kernel) -> np.ndarray:
    """Denoise noise of std ``sigma`` correlated by ``kernel``: BM3D gets the PSD, the others ``sigma``."""
    if name == "bm3d" and not kernel.is_white:
        arr, _ = _prepare(image, 0.0)
        return bm3d_denoise(arr, psd=bm3d_psd(kernel, arr.shape, sigma**2))
    return fn(image, sigma)


def denoise_classical(name: str, noisy: np.ndarray, noise: NoiseModel | None) -> np.ndarray:
    """Denoise ``noisy`` with the classical method ``name`` for the given noise model.

    * :class:`~xraydenoise.noise.GaussianNoise` -> ``fn(noisy, noise.sigma)``;
    * ``None`` -> ``fn(noisy, None)`` (blind: sigma is estimated from the image);
    * :class:`~xraydenoise.noise.PoissonGaussianNoise` -> through the generalised Anscombe
      transform (GAT): ``d = GAT(noisy, a, s)`` has noise of about unit std, ``d`` is
      rescaled to [0, 1] by its min and max (so its noise std becomes ``1 / (max - min)``),
      denoised as Gaussian noise, scaled back, and mapped back with the closed-form exact
      unbiased inverse (Makitalo & Foi). ``a == 0`` is plain Gaussian noise of std ``s``.
    * :class:`~xraydenoise.noise.CorrelatedNoise` -> the same two paths (constant std ``s``,
      or the GAT when ``a > 0``: the stabilised noise has unit variance and the same
      correlation), except that BM3D is told the noise power spectrum
      (``bm3d_denoise(..., psd=...)``, from the model's kernel) instead of a white sigma;
      the other filters, which model white noise only, are given the per-pixel std.

    A model estimated from the image (:func:`xraydenoise.noise.estimate_noise`) is used the
    same way. Returns float32 of the input's shape. The result is not clipped: the inverse
    GAT is already >= 0, and values slightly above 1 are left for whoever writes the image
    (clipping would hide the method's bias from the metrics). Clipped noise (``clip=True``)
    is treated like unclipped noise of the same model.

    >>> from xraydenoise.noise import parse_noise
    >>> noisy = parse_noise("10@gauss:1").sample(np.full((32, 32), 0.5), seed=0)
    >>> denoise_classical("gaussian", noisy, parse_noise("10@gauss:1")).shape
    (32, 32)
    """
    fn = get_classical(name)
    if noise is None:
        return fn(noisy, None)
    if isinstance(noise, GaussianNoise):
        return fn(noisy, noise.sigma)
    if not isinstance(noise, (PoissonGaussianNoise, CorrelatedNoise)):
        raise TypeError(f"unknown noise model {noise!r}")
    if noise.a == 0:
        return _with_kernel(name, fn, noisy, noise.s, noise.kernel)
    arr, _ = _prepare(noisy, 0.0)
    d = generalized_anscombe(arr, noise.a, noise.s)
    lo, hi = float(d.min()), float(d.max())
    if hi - lo <= 1e-12:  # constant image: nothing to denoise
        return inverse_generalized_anscombe(d, noise.a, noise.s).astype(np.float32)
    scale = hi - lo
    out = _with_kernel(name, fn, ((d - lo) / scale).astype(np.float32), 1.0 / scale, noise.kernel)
    d_hat = out.astype(np.float64) * scale + lo
    return inverse_generalized_anscombe(d_hat, noise.a, noise.s).astype(np.float32)
