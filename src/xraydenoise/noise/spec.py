"""The text form of a noise model, for the command line, ``evaluate --levels`` and configs.

Grammar (case-insensitive, no commas, so a comma-separated list of levels splits safely)::

    NOISE  := LEVEL [ "@" KERNEL ]
    LEVEL  := SIGMA | "gaussian:" SIGMA | "g:" SIGMA          white Gaussian, sigma in grey levels of 255
            | "pg:" A ":" S | "poisson-gaussian:" A ":" S     gain A on the [0, 1] scale, S in grey levels
    KERNEL := "gauss:" W                                      exp(-r^2 / (2 W^2)), W in px
            | "exp:" W                                        exp(-r / W), W in px
            | "kernel:" FILE.npy                              measured 2-D kernel (odd square array)
            | "nps:" FILE.npy                                 measured noise power spectrum, zero frequency centred

Without a kernel the models are the pixel-independent ones (:class:`GaussianNoise`,
:class:`PoissonGaussianNoise`, generating exactly the noise they always did). With a kernel
the model is :class:`CorrelatedNoise`: unit white noise convolved with the normalised kernel,
times ``S`` (Gaussian) or ``sqrt(A * x + S^2)`` (``pg``). Examples::

    10                   white Gaussian, sigma 10/255
    pg:0.01:5            Poisson-Gaussian, a = 0.01, s = 5/255
    10@gauss:1           correlated Gaussian, sigma 10/255, Gaussian kernel of 1 px
    pg:0.01:3@exp:0.7    std sqrt(0.01 x + (3/255)^2), kernel exp(-r / 0.7 px)

Labels (``gaussian-10-gauss1``, ``poisson-gaussian-a0.01-s3-exp0.7``) are read back too.
For training mixes every number may be a range ``LO..HI`` (:func:`parse_noise_range`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from xraydenoise.errors import ConfigError

from .correlated import CorrelatedNoise
from .kernels import ArrayKernel, ExponentialKernel, GaussianKernel, Kernel, load_kernel_file
from .white import GaussianNoise, PoissonGaussianNoise

__all__ = ["NOISE_SYNTAX", "NoiseModel", "NoiseRange", "parse_noise", "parse_noise_range"]

NoiseModel = GaussianNoise | PoissonGaussianNoise | CorrelatedNoise

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_VALUE = rf"({_NUMBER}(?:\.\.{_NUMBER})?)"
_GAUSSIAN_RE = re.compile(rf"^(?:(?:gaussian|gauss|g)\s*[:=\-]\s*)?{_VALUE}$")
_PG_RE = re.compile(rf"^(?:pg|poisson-gaussian|poisson_gaussian)\s*:\s*{_VALUE}\s*:\s*{_VALUE}$")
# The labels written by .label are accepted too, so results can be traced back to a model.
_PG_LABEL_RE = re.compile(rf"^(?:pg|poisson-gaussian)-a{_VALUE}-s{_VALUE}$")
_KERNEL_RE = re.compile(rf"^(gauss|gaussian|exp|exponential)\s*:\s*{_VALUE}$")
_KERNEL_LABEL_RE = re.compile(rf"^(.+)-(gauss|exp)({_NUMBER})$")
_FILE_KERNEL_RE = re.compile(r"^(kernel|nps)\s*:\s*(\S.*)$", re.IGNORECASE)

NOISE_SYNTAX = (
    "expected a Gaussian sigma in grey levels of 255 ('25' or 'gaussian:25') or a "
    "Poisson-Gaussian model 'pg:A:S' / 'poisson-gaussian:A:S' with gain A on the [0, 1] "
    "scale and electronic noise S in grey levels (e.g. 'pg:0.01:5'), optionally correlated by a "
    "detector kernel '@gauss:W', '@exp:W' (W in px), '@kernel:FILE.npy' or '@nps:FILE.npy' "
    "(e.g. '10@gauss:1', 'pg:0.01:3@exp:0.7')"
)


def _value(token: str, what: str, text: str, *, ranges: bool) -> tuple[float, float]:
    lo_text, _, hi_text = token.partition("..")
    lo = float(lo_text)
    hi = float(hi_text) if hi_text else lo
    if hi_text and not ranges:
        raise ConfigError(f"invalid noise {text!r}: a range {token!r} is only allowed in a training mix")
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi < 0:
        raise ConfigError(f"invalid noise {text!r}: {what} must be a finite number >= 0, got {token!r}")
    if hi < lo:
        raise ConfigError(f"invalid noise {text!r}: the range {token!r} of {what} runs backwards")
    return lo, hi


@dataclass(frozen=True)
class NoiseRange:
    """A family of noise models with parameters drawn from ranges (a training mix entry).

    ``sigma`` and ``s`` are drawn uniformly, ``a`` log-uniformly (uniformly when its range
    starts at 0), the kernel width uniformly. Values are on the [0, 1] scale.

    >>> r = parse_noise_range("g:0..55@gauss:0.3..1.5")
    >>> r.s, r.width
    ((0.0, 0.21568627450980393), (0.3, 1.5))
    """

    kind: str  # "gaussian" or "pg"
    a: tuple[float, float] = (0.0, 0.0)
    s: tuple[float, float] = (0.0, 0.0)
    family: str | None = None  # "gauss", "exp" or None (pixel-independent or a file kernel)
    width: tuple[float, float] = (0.0, 0.0)
    kernel: ArrayKernel | None = None

    def draw(self, generator) -> NoiseModel:
        """One model with parameters drawn from ``generator`` (a ``torch.Generator``)."""
        import torch

        u = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        s = self.s[0] + u[0] * (self.s[1] - self.s[0])
        if self.a[0] > 0:
            a = math.exp(math.log(self.a[0]) + u[1] * (math.log(self.a[1]) - math.log(self.a[0])))
        else:
            a = self.a[0] + u[1] * (self.a[1] - self.a[0])
        kernel: Kernel | None = self.kernel
        if self.family is not None:
            width = self.width[0] + u[2] * (self.width[1] - self.width[0])
            kernel = GaussianKernel(width) if self.family == "gauss" else ExponentialKernel(width)
        if kernel is None:
            return GaussianNoise(s) if self.kind == "gaussian" else PoissonGaussianNoise(a, s)
        return CorrelatedNoise(kernel, a=a if self.kind == "pg" else 0.0, s=s)


def _split(text: object) -> tuple[str, str, str | None]:
    """``(original, lower-case level part, kernel part with its original case or None)``."""
    if not isinstance(text, str):
        raise ConfigError(f"invalid noise specification {text!r}: {NOISE_SYNTAX}")
    level, at, kernel = text.strip().partition("@")
    if at and "@" in kernel:
        raise ConfigError(f"invalid noise {text!r}: more than one '@' (one detector kernel at most)")
    level = level.strip().lower()
    if not at:
        m = _KERNEL_LABEL_RE.match(level)  # label form: gaussian-10-gauss1
        if m and (_GAUSSIAN_RE.match(m.group(1)) or _PG_LABEL_RE.match(m.group(1))):
            return text, m.group(1), f"{m.group(2)}:{m.group(3)}"
    return text, level, kernel.strip() if at else None


def _parse(text: object, *, ranges: bool) -> NoiseRange:
    text, level, kernel_text = _split(text)
    m = _GAUSSIAN_RE.match(level)
    if m:
        lo, hi = _value(m.group(1), "the Gaussian sigma", text, ranges=ranges)
        entry = NoiseRange("gaussian", s=(lo / 255.0, hi / 255.0))
    else:
        m = _PG_RE.match(level) or _PG_LABEL_RE.match(level)
        if not m:
            raise ConfigError(f"invalid noise specification {text!r}: {NOISE_SYNTAX}")
        a = _value(m.group(1), "the gain A", text, ranges=ranges)
        s = _value(m.group(2), "the noise S", text, ranges=ranges)
        if a[1] == 0 and s[1] == 0:
            raise ConfigError(f"invalid noise {text!r}: A and S are both 0 (no noise)")
        entry = NoiseRange("pg", a=a, s=(s[0] / 255.0, s[1] / 255.0))
    if kernel_text is None:
        return entry
    m = _KERNEL_RE.match(kernel_text.lower())
    if m:
        family = "gauss" if m.group(1).startswith("gauss") else "exp"
        width = _value(m.group(2), "the kernel width", text, ranges=ranges)
        return NoiseRange(entry.kind, a=entry.a, s=entry.s, family=family, width=width)
    m = _FILE_KERNEL_RE.match(kernel_text)
    if m:
        kernel = load_kernel_file(m.group(2).strip(), is_nps=m.group(1).lower() == "nps")
        return NoiseRange(entry.kind, a=entry.a, s=entry.s, kernel=kernel)
    raise ConfigError(
        f"invalid noise {text!r}: unknown detector kernel {kernel_text!r} "
        "(expected gauss:W, exp:W, kernel:FILE.npy or nps:FILE.npy)"
    )


def parse_noise(text: str) -> NoiseModel:
    """Parse a noise specification (grammar in this module's docstring) into a noise model.

    * ``"25"``, ``"gaussian:25"`` (also ``gauss:25``, ``g:25``, ``gaussian-25``) ->
      ``GaussianNoise(25 / 255)``: sigma is given in grey levels of 255.
    * ``"pg:0.01:5"``, ``"poisson-gaussian:0.01:5"`` (also the label form
      ``poisson-gaussian-a0.01-s5``) -> ``PoissonGaussianNoise(0.01, 5 / 255)``: the gain
      ``a`` is on the [0, 1] scale, ``s`` in grey levels of 255.
    * either followed by ``@gauss:W``, ``@exp:W``, ``@kernel:FILE.npy`` or ``@nps:FILE.npy`` ->
      :class:`CorrelatedNoise` with that detector kernel.

    ``parse_noise(str(model)) == model`` for every model. Anything else (malformed text,
    NaN, negative values) raises :class:`~xraydenoise.errors.ConfigError` with a one-line
    message naming the problem.

    >>> parse_noise("10@gauss:1")
    CorrelatedNoise(kernel=GaussianKernel(width=1.0), a=0.0, s=0.0392156862745098, clip=False)
    """
    entry = _parse(text, ranges=False)
    kernel: Kernel | None = entry.kernel
    if entry.family is not None:
        kernel = (GaussianKernel if entry.family == "gauss" else ExponentialKernel)(entry.width[0])
    if kernel is None:
        return GaussianNoise(entry.s[0]) if entry.kind == "gaussian" else PoissonGaussianNoise(entry.a[0], entry.s[0])
    return CorrelatedNoise(kernel, a=entry.a[0], s=entry.s[0])


def parse_noise_range(text: str) -> NoiseRange:
    """Parse a training-mix entry: the :func:`parse_noise` grammar, any number may be ``LO..HI``.

    >>> parse_noise_range("pg:0.0005..0.03:0..10").a
    (0.0005, 0.03)
    """
    return _parse(text, ranges=True)
