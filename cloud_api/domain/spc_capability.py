"""Process capability Cp, Cpk (within sigma) and Pp, Ppk (overall sigma) with confidence intervals.

Formulas: NIST/SEMATECH e-Handbook 6.1.6 and Montgomery, Introduction to Statistical Quality Control, 8.3:
Cp = (USL-LSL)/6σ, Cpk = min(USL-μ, μ-LSL)/3σ; Cp's interval from the chi-square distribution with n-1 degrees
of freedom, Cpk's from Bissell's normal approximation (Cpk ± z·sqrt(1/9n + Cpk²/2(n-1))). The same intervals are
given for Pp/Ppk. One-sided specifications give only the k-index of their side. The quantiles are computed here
from the standard library (the domain stays free of scipy; the tests compare them with scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True, slots=True)
class Index:
    value: float
    lower: float | None  # confidence interval bounds (None with fewer than 2 values)
    upper: float | None


@dataclass(frozen=True, slots=True)
class Capability:
    n: int
    mean: float
    sigma_within: float
    sigma_overall: float
    lsl: float | None
    usl: float | None
    confidence: float
    cp: Index | None
    cpk: Index | None
    pp: Index | None
    ppk: Index | None


def capability(
    n: int,
    mean: float,
    sigma_within: float,
    sigma_overall: float,
    lsl: float | None,
    usl: float | None,
    confidence: float = 0.95,
) -> Capability:
    return Capability(
        n,
        mean,
        sigma_within,
        sigma_overall,
        lsl,
        usl,
        confidence,
        _cp(n, sigma_within, lsl, usl, confidence),
        _cpk(n, mean, sigma_within, lsl, usl, confidence),
        _cp(n, sigma_overall, lsl, usl, confidence),
        _cpk(n, mean, sigma_overall, lsl, usl, confidence),
    )


def _cp(n: int, sigma: float, lsl: float | None, usl: float | None, confidence: float) -> Index | None:
    if lsl is None or usl is None or sigma <= 0:
        return None
    value = (usl - lsl) / (6 * sigma)
    if n < 2:
        return Index(value, None, None)
    alpha, dof = 1 - confidence, n - 1
    lower = value * math.sqrt(chi2_quantile(alpha / 2, dof) / dof)
    upper = value * math.sqrt(chi2_quantile(1 - alpha / 2, dof) / dof)
    return Index(value, lower, upper)


def _cpk(n: int, mean: float, sigma: float, lsl: float | None, usl: float | None, confidence: float) -> Index | None:
    sides = [
        d
        for d in ((usl - mean) if usl is not None else None, (mean - lsl) if lsl is not None else None)
        if d is not None
    ]
    if not sides or sigma <= 0:
        return None
    value = min(sides) / (3 * sigma)
    if n < 2:
        return Index(value, None, None)
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    half = z * math.sqrt(1 / (9 * n) + value**2 / (2 * (n - 1)))
    return Index(value, value - half, value + half)


def chi2_quantile(p: float, dof: int) -> float:
    """x with P(χ²_dof <= x) = p: Newton steps on the regularised lower incomplete gamma function from the
    Wilson-Hilferty approximation (a handful of evaluations: with tens of thousands of values, each evaluation
    sums thousands of series terms), bisection where Newton does not settle."""
    if not 0 < p < 1:
        raise ValueError("p must be in (0, 1)")
    half = dof / 2
    log_norm = half * math.log(2) + math.lgamma(half)
    ratio = 2 / (9 * dof)
    x = dof * max(1e-6, 1 - ratio + NormalDist().inv_cdf(p) * math.sqrt(ratio)) ** 3
    for _ in range(30):
        density = math.exp((half - 1) * math.log(x) - x / 2 - log_norm)
        if not density > 0:
            break
        step = (_gamma_p(half, x / 2) - p) / density
        following = x - step if x - step > 0 else x / 2
        if abs(following - x) <= 1e-13 * x:
            return following
        x = following
    return _chi2_bisection(p, dof)


def _chi2_bisection(p: float, dof: int) -> float:
    low, high = 0.0, max(1.0, dof + 20 * math.sqrt(2 * dof) + 50)
    for _ in range(200):
        middle = (low + high) / 2
        if _gamma_p(dof / 2, middle / 2) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def _gamma_p(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x): series below a+1, Lentz continued fraction above."""
    if x <= 0:
        return 0.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        k = a
        for _ in range(10_000):
            k += 1
            term *= x / k
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return total * math.exp(log_prefix)
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return 1.0 - math.exp(log_prefix) * h
