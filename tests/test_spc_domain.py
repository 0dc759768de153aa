"""SPC decisions against published worked examples (pure domain, quick tier).

Sources:
- Control chart factors: Montgomery, "Introduction to Statistical Quality Control" (ISQC), Appendix VI
  ("Factors for constructing variables control charts"), the same table as ASTM STP 15D.
- Piston-ring inside diameters, 25 phase-I samples of n = 5 and 15 phase-II samples: Montgomery ISQC Table 6.3
  (X̄-R: Example 6.1, X̄-S: Example 6.3; the same data ship as `pistonrings` in the R package qcc).
  Published: x̄̄ = 74.001, R̄ = 0.023, X̄ limits 73.988 / 74.014, R UCL 0.048; s̄ = 0.0094, S UCL 0.0196;
  phase-II samples 37, 38 and 39 plot above the X̄ UCL.
- Individuals chart of flow rates: NIST/SEMATECH e-Handbook of Statistical Methods 6.3.2.2 (x̄ = 50.81,
  MR̄ = 1.8778, UCL 55.8041, LCL 45.8159, MR UCL 6.1349).
- Capability and its intervals: NIST/SEMATECH e-Handbook 6.1.6 and Montgomery ISQC 8.3 (Example 8.6: n = 20,
  Ĉpk = 1.33 gives 0.88 <= Cpk <= 1.78 at 95 %); chi-square quantiles of the ISQC Appendix III table.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest

from cloud_api.domain import spc_charts as sc
from cloud_api.domain.spc_capability import capability, chi2_quantile
from cloud_api.domain.spc_charts import ChartType, Subgroup
from cloud_api.domain.spc_rules import nelson_flags

# Montgomery ISQC Table 6.3: samples 1-25 (phase I) then 26-40 (phase II).
PISTON_RINGS = (
    (74.030, 74.002, 74.019, 73.992, 74.008), (73.995, 73.992, 74.001, 74.011, 74.004),
    (73.988, 74.024, 74.021, 74.005, 74.002), (74.002, 73.996, 73.993, 74.015, 74.009),
    (73.992, 74.007, 74.015, 73.989, 74.014), (74.009, 73.994, 73.997, 73.985, 73.993),
    (73.995, 74.006, 73.994, 74.000, 74.005), (73.985, 74.003, 73.993, 74.015, 73.988),
    (74.008, 73.995, 74.009, 74.005, 74.004), (73.998, 74.000, 73.990, 74.007, 73.995),
    (73.994, 73.998, 73.994, 73.995, 73.990), (74.004, 74.000, 74.007, 74.000, 73.996),
    (73.983, 74.002, 73.998, 73.997, 74.012), (74.006, 73.967, 73.994, 74.000, 73.984),
    (74.012, 74.014, 73.998, 73.999, 74.007), (74.000, 73.984, 74.005, 73.998, 73.996),
    (73.994, 74.012, 73.986, 74.005, 74.007), (74.006, 74.010, 74.018, 74.003, 74.000),
    (73.984, 74.002, 74.003, 74.005, 73.997), (74.000, 74.010, 74.013, 74.020, 74.003),
    (73.988, 74.001, 74.009, 74.005, 73.996), (74.004, 73.999, 73.990, 74.006, 74.009),
    (74.010, 73.989, 73.990, 74.009, 74.014), (74.015, 74.008, 73.993, 74.000, 74.010),
    (73.982, 73.984, 73.995, 74.017, 74.013),
    (74.012, 74.015, 74.030, 73.986, 74.000), (73.995, 74.010, 73.990, 74.015, 74.001),
    (73.987, 73.999, 73.985, 74.000, 73.990), (74.008, 74.010, 74.003, 73.991, 74.006),
    (74.003, 74.000, 74.001, 73.986, 73.997), (73.994, 74.003, 74.015, 74.020, 74.004),
    (74.008, 74.002, 74.018, 73.995, 74.005), (74.001, 74.004, 73.990, 73.996, 73.998),
    (74.015, 74.000, 74.016, 74.025, 74.000), (74.030, 74.005, 74.000, 74.016, 74.012),
    (74.001, 73.990, 73.995, 74.010, 74.024), (74.015, 74.020, 74.024, 74.005, 74.019),
    (74.035, 74.010, 74.012, 74.015, 74.026), (74.017, 74.013, 74.036, 74.025, 74.026),
    (74.010, 74.005, 74.029, 74.000, 74.020),
)  # fmt: skip
NIST_FLOWRATE = (49.6, 47.6, 49.9, 51.3, 47.8, 51.2, 52.6, 52.4, 53.6, 52.1)
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def groups(rows: tuple[tuple[float, ...], ...]) -> list[Subgroup]:
    return [Subgroup(str(i + 1), T0 + timedelta(minutes=i), row) for i, row in enumerate(rows)]


def individuals(values: tuple[float, ...] | list[float]) -> list[Subgroup]:
    return [Subgroup(str(i + 1), T0 + timedelta(minutes=i), (v,)) for i, v in enumerate(values)]


# n: A2, A3, c4, B3, B4, d2, D3, D4 (Montgomery ISQC Appendix VI)
FACTORS = {
    2: (1.880, 2.659, 0.7979, 0, 3.267, 1.128, 0, 3.267),
    3: (1.023, 1.954, 0.8862, 0, 2.568, 1.693, 0, 2.574),
    4: (0.729, 1.628, 0.9213, 0, 2.266, 2.059, 0, 2.282),
    5: (0.577, 1.427, 0.9400, 0, 2.089, 2.326, 0, 2.114),
    6: (0.483, 1.287, 0.9515, 0.030, 1.970, 2.534, 0, 2.004),
    7: (0.419, 1.182, 0.9594, 0.118, 1.882, 2.704, 0.076, 1.924),
    8: (0.373, 1.099, 0.9650, 0.185, 1.815, 2.847, 0.136, 1.864),
    10: (0.308, 0.975, 0.9727, 0.284, 1.716, 3.078, 0.223, 1.777),
    15: (0.223, 0.789, 0.9823, 0.428, 1.572, 3.472, 0.347, 1.653),
    20: (0.180, 0.680, 0.9869, 0.510, 1.490, 3.735, 0.415, 1.585),
    25: (0.153, 0.606, 0.9896, 0.565, 1.435, 3.931, 0.459, 1.541),
}


@pytest.mark.parametrize("n", sorted(FACTORS))
def test_control_chart_factors_match_the_published_table(n: int) -> None:
    a2, a3, c4, b3, b4, d2, d3_, d4 = FACTORS[n]
    # The table rounds to three places from constants that were themselves rounded (D4(3) = 2.574 where the
    # exact value is 2.5746): agree within one unit of the last place.
    got = (sc.a2(n), sc.a3(n), sc.b3(n), sc.b4(n), sc.d2(n), sc.d3_factor(n), sc.d4_factor(n))
    assert got == pytest.approx((a2, a3, b3, b4, d2, d3_, d4), abs=1.01e-3)
    assert sc.c4(n) == pytest.approx(c4, abs=1.01e-4)


def test_range_constants_refuse_untabulated_sizes() -> None:
    with pytest.raises(ValueError):
        sc.d2(26)
    with pytest.raises(ValueError):
        sc.c4(1)


def test_xbar_r_piston_rings_montgomery_example_6_1() -> None:
    base = sc.estimate_baseline(ChartType.XBAR_R, groups(PISTON_RINGS[:25]))
    assert base is not None and base.points == 25
    pair = sc.build_chart(ChartType.XBAR_R, groups(PISTON_RINGS[:25]), base)
    x, r = pair.location[0], pair.dispersion[0]
    assert x.cl == pytest.approx(74.00118, abs=1e-5)
    assert r.cl == pytest.approx(0.02276, abs=1e-5)  # R̄: sigma = R̄/d2 gives back R̄ on the R chart
    assert (round(x.lcl or 0, 3), round(x.ucl or 0, 3)) == (73.988, 74.014)
    assert x.ucl == pytest.approx(74.00118 + 0.577 * 0.02276, abs=5e-5)
    assert r.lcl == 0 and round(r.ucl or 0, 3) == 0.048
    # Phase I is in control on both charts (Montgomery: "no indication of an out-of-control condition").
    assert all(not f for f in nelson_flags(pair.location)[:25] if 1 in f)
    assert all(p.value is not None and p.value <= (p.ucl or 0) for p in pair.dispersion)


def test_phase_ii_points_37_to_39_break_rule_1_montgomery_table_6_3() -> None:
    base = sc.estimate_baseline(ChartType.XBAR_R, groups(PISTON_RINGS[:25]))
    assert base is not None
    pair = sc.build_chart(ChartType.XBAR_R, groups(PISTON_RINGS), base)
    beyond = [int(p.key) for p, flags in zip(pair.location, nelson_flags(pair.location), strict=True) if 1 in flags]
    assert beyond == [37, 38, 39]


def test_xbar_s_piston_rings_montgomery_example_6_3() -> None:
    base = sc.estimate_baseline(ChartType.XBAR_S, groups(PISTON_RINGS[:25]))
    assert base is not None
    pair = sc.build_chart(ChartType.XBAR_S, groups(PISTON_RINGS[:25]), base)
    x, s = pair.location[0], pair.dispersion[0]
    # Montgomery prints s̄ = 0.0094 and UCL = B4·s̄ = 0.0196; the values of the table (as in qcc's copy) give
    # s̄ = 0.00924 (the book sums a per-sample s column rounded to four places): agree within 0.0003.
    assert s.cl == pytest.approx(0.0094, abs=3e-4)
    assert s.ucl == pytest.approx(sc.b4(5) * (s.cl or 0)) and s.ucl == pytest.approx(0.0196, abs=7e-4)
    assert s.lcl == 0
    assert (round(x.lcl or 0, 3), round(x.ucl or 0, 3)) == (73.988, 74.014)
    assert x.ucl == pytest.approx((x.cl or 0) + sc.a3(5) * (s.cl or 0), abs=1e-9)


def test_individuals_chart_nist_handbook_6_3_2_2() -> None:
    base = sc.estimate_baseline(ChartType.IMR, individuals(NIST_FLOWRATE))
    assert base is not None
    pair = sc.build_chart(ChartType.IMR, individuals(NIST_FLOWRATE), base)
    i, mr = pair.location[0], pair.dispersion[0]
    assert i.cl == pytest.approx(50.81, abs=1e-9)
    assert mr.cl == pytest.approx(1.8778, abs=1e-4)
    # The handbook divides by d2 = 1.128 (three places): 55.8041 / 45.8159; d2 = 1.128379 moves them by 0.002.
    assert i.ucl == pytest.approx(55.8041, abs=2e-3) and i.lcl == pytest.approx(45.8159, abs=2e-3)
    assert i.ucl == pytest.approx(50.81 + 3 * 1.8778 / sc.d2(2), abs=1e-4)
    assert mr.ucl == pytest.approx(6.1349, abs=2e-3) and mr.lcl == 0
    assert mr.value is None and pair.dispersion[1].value == pytest.approx(2.0)


def test_lot_subgroups_of_unequal_size_get_their_own_limits() -> None:
    rows = (PISTON_RINGS[0], PISTON_RINGS[1][:3])
    base = sc.Baseline(74.0, 0.01, 2)
    pair = sc.build_chart(ChartType.XBAR_R, groups(rows), base)
    assert pair.location[0].ucl == pytest.approx(74.0 + 3 * 0.01 / math.sqrt(5))
    assert pair.location[1].ucl == pytest.approx(74.0 + 3 * 0.01 / math.sqrt(3))
    assert pair.dispersion[1].ucl == pytest.approx(sc.d4_factor(3) * sc.d2(3) * 0.01)


def test_capability_piston_rings_montgomery() -> None:
    flat = [v for row in PISTON_RINGS[:25] for v in row]
    sigma_within = 0.02276 / sc.d2(5)
    cap = capability(len(flat), sum(flat) / len(flat), sigma_within, sc.stdev(flat), 73.95, 74.05)
    assert cap.cp is not None and cap.cpk is not None and cap.pp is not None and cap.ppk is not None
    assert round(cap.cp.value, 2) == 1.70 and round(cap.cpk.value, 2) == 1.66
    assert cap.pp.value == pytest.approx(0.10 / (6 * sc.stdev(flat)))
    assert cap.cp.lower is not None and cap.cp.upper is not None
    assert cap.cp.lower < cap.cp.value < cap.cp.upper


def test_cp_interval_uses_chi_square_quantiles_of_the_table() -> None:
    # Montgomery ISQC Appendix III: chi-square(0.975, 19) = 8.91, chi-square(0.025, 19) = 32.85 (upper tails).
    assert round(chi2_quantile(0.025, 19), 2) == 8.91
    assert round(chi2_quantile(0.975, 19), 2) == 32.85
    cap = capability(20, 50.0, 1.75, 1.75, 38.0, 62.0)  # Montgomery Example 8.5: USL 62, LSL 38, s = 1.75
    assert cap.cp is not None and cap.cp.lower is not None and cap.cp.upper is not None
    assert round(cap.cp.value, 2) == 2.29
    assert cap.cp.lower == pytest.approx(cap.cp.value * math.sqrt(8.9065 / 19), abs=1e-3)
    assert cap.cp.upper == pytest.approx(cap.cp.value * math.sqrt(32.8523 / 19), abs=1e-3)


def test_chi_square_quantile_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for p in (0.005, 0.025, 0.5, 0.975, 0.995):
        for dof in (1, 2, 9, 49, 124, 999):
            assert chi2_quantile(p, dof) == pytest.approx(float(stats.chi2.ppf(p, dof)), rel=1e-9)


def test_cpk_interval_montgomery_example_8_6() -> None:
    cap = capability(20, 0.0, 1.0, 1.0, -10.0, 3.99)  # Ĉpk = 3.99 / 3 = 1.33
    assert cap.cpk is not None and cap.cpk.lower is not None and cap.cpk.upper is not None
    assert (round(cap.cpk.lower, 2), round(cap.cpk.upper, 2)) == (0.88, 1.78)


def test_one_sided_specification_gives_only_its_k_index() -> None:
    cap = capability(30, 10.0, 1.0, 1.2, None, 16.0)
    assert cap.cp is None and cap.pp is None
    assert cap.cpk is not None and cap.cpk.value == pytest.approx(2.0)
    assert cap.ppk is not None and cap.ppk.value == pytest.approx(6 / 3.6)


def flags_for(values: list[float]) -> list[tuple[int, ...]]:
    base = sc.Baseline(0.0, 1.0, len(values))
    return nelson_flags(sc.build_chart(ChartType.IMR, individuals(values), base).location)


def first_flag(values: list[float], rule: int) -> int | None:
    return next((i for i, f in enumerate(flags_for(values)) if rule in f), None)


@pytest.mark.parametrize(
    ("rule", "values", "expected"),
    [
        (1, [0.1, -0.2, 3.2], 2),
        (1, [0.1, -0.2, -3.01], 2),
        (2, [0.5, -0.5] + [0.3] * 9, 10),
        (3, [0.0, -0.5, -0.4, -0.2, 0.1, 0.3, 0.5], 6),
        (4, [0.6] + [0.5 * (-1) ** i for i in range(14)], 14),
        (5, [0.0, 2.2, 0.5, 2.5], 3),
        (6, [0.0, 1.5, 1.2, 0.2, 1.8, 1.1], 5),
        (7, [2.5] + [0.2 * (-1) ** i for i in range(15)], 15),
        (8, [0.0] + [1.5 * (-1) ** (i // 2) for i in range(8)], 8),
    ],
)
def test_each_nelson_rule_fires_on_the_point_that_completes_its_pattern(
    rule: int, values: list[float], expected: int
) -> None:
    assert first_flag(values, rule) == expected


def test_nelson_rules_stay_quiet_one_point_short_of_each_pattern() -> None:
    assert first_flag([0.3] * 8, 2) is None
    assert first_flag([0.0, 0.1, 0.2, 0.3, 0.4], 3) is None
    assert first_flag([0.5 * (-1) ** i for i in range(13)], 4) is None
    assert first_flag([2.2, 0.5, -2.5], 5) is None  # beyond 2 sigma, but on opposite sides
    assert first_flag([0.2 * (-1) ** i for i in range(14)], 7) is None
    assert first_flag([1.5] * 8, 8) is None  # all on one side: that is rule 2/6, not rule 8
    assert first_flag([2.99, -2.99], 1) is None


def test_points_without_limits_break_no_rule() -> None:
    pair = sc.build_chart(ChartType.IMR, individuals([1.0, 5.0]), sc.Baseline(0.0, 1.0, 2))
    # MR chart: the first point has no value; the second (MR 4 > 3.686) breaks rule 1.
    assert nelson_flags(pair.dispersion) == [(), (1,)]


def test_fixed_size_subgroups_leave_out_an_incomplete_tail() -> None:
    values = [(f"S{i}", T0 + timedelta(minutes=i), float(i)) for i in range(7)]
    made = sc.fixed_size_subgroups(values, 3)
    assert [g.values for g in made] == [(0.0, 1.0, 2.0), (3.0, 4.0, 5.0)]
    assert made[1].key == "S3..S5" and made[1].time == T0 + timedelta(minutes=5)


def test_without_a_baseline_points_carry_values_but_no_limits() -> None:
    pair = sc.build_chart(ChartType.XBAR_R, groups(PISTON_RINGS[:2]), None)
    assert pair.location[0].value == pytest.approx(74.0102) and pair.location[0].ucl is None
    assert pair.dispersion[0].value == pytest.approx(0.038) and pair.dispersion[0].cl is None
    assert nelson_flags(pair.location) == [(), ()]
    imr = sc.build_chart(ChartType.IMR, individuals([1.0, 4.0]), None)
    assert [p.value for p in imr.dispersion] == [None, 3.0]


def _reference_flags(z: list[float | None], values: list[float | None]) -> list[tuple[int, ...]]:
    """The rules written out window by window (slow, obviously right) to check the one-pass version against."""
    runs = {1: 1, 2: 9, 3: 6, 4: 14, 5: 3, 6: 5, 7: 15, 8: 8}
    out: list[tuple[int, ...]] = []
    for i in range(len(z)):
        hits = []
        for rule, n in runs.items():
            if i + 1 < n or any(x is None for x in z[i + 1 - n : i + 1]):
                continue
            w = [x for x in z[i + 1 - n : i + 1] if x is not None]
            v = [x for x in values[i + 1 - n : i + 1] if x is not None]
            steps = [b - a for a, b in itertools.pairwise(v)]
            side = 1 if w[-1] > 0 else -1
            ok = {
                1: abs(w[-1]) > 3,
                2: all(x > 0 for x in w) or all(x < 0 for x in w),
                3: all(s > 0 for s in steps) or all(s < 0 for s in steps),
                4: all(s != 0 for s in steps) and all((a > 0) != (b > 0) for a, b in itertools.pairwise(steps)),
                5: abs(w[-1]) > 2 and sum(1 for x in w if x * side > 2) >= 2,
                6: abs(w[-1]) > 1 and sum(1 for x in w if x * side > 1) >= 4,
                7: all(abs(x) < 1 for x in w),
                8: all(abs(x) > 1 for x in w) and any(x > 0 for x in w) and any(x < 0 for x in w),
            }[rule]
            if ok:
                hits.append(rule)
        out.append(tuple(hits))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_one_pass_nelson_rules_agree_with_the_window_by_window_definition(seed: int) -> None:
    import random

    rng = random.Random(seed)
    values: list[float] = []
    level = 0.0
    for _ in range(3000):  # drifts, steps, oscillation and quiet stretches, so every rule fires somewhere
        mode = rng.random()
        level += rng.gauss(0, 0.3) if mode < 0.9 else rng.choice([-2.5, 2.5])
        values.append(round(level * 0.3 + rng.gauss(0, 0.6 if mode < 0.7 else 0.1), 1))
    values[1000:1010] = [2.0, -1.5, -2.0, 1.5, 2.5, -2.0, 1.8, -1.6, -1.9, 2.2]  # rule 8: both sides beyond 1 sigma
    pair = sc.build_chart(ChartType.IMR, individuals(values), sc.Baseline(0.0, 1.0, len(values)))
    points = list(pair.location)
    for i in range(0, len(points), 500):  # a point without limits now and then breaks every run
        points[i] = points[i]._replace(lcl=None, cl=None, ucl=None)
    z = [None if p.cl is None else (p.value or 0.0) - p.cl for p in points]
    expected = _reference_flags(z, [p.value for p in points])
    assert nelson_flags(points) == expected
    assert {rule for flags in expected for rule in flags} == set(range(1, 9))
