"""The statistics are scipy's, two-sided, and agree with values computed by hand."""

import math

import pytest

from r3kit.eval.stats import across_seeds, mcnemar, mean_sd, proportion


def test_wilson_interval_matches_known_values():
    p = proportion(8, 10)
    assert math.isclose(p["ci_low"], 0.4902, abs_tol=1e-4) and math.isclose(p["ci_high"], 0.9433, abs_tol=1e-4)
    p = proportion(0, 20)
    assert p["ci_low"] == pytest.approx(0.0, abs=1e-12) and math.isclose(p["ci_high"], 0.1611, abs_tol=1e-4)
    p = proportion(500, 1000)
    assert math.isclose(p["ci_low"], 0.4691, abs_tol=1e-4) and math.isclose(p["ci_high"], 0.5309, abs_tol=1e-4)
    assert proportion(0, 0)["ci_high"] == 1.0


def test_mcnemar_is_exact_and_two_sided_so_a_loss_shows():
    before = [False] * 10 + [True] * 5
    after = [True] * 8 + [False] * 2 + [True] * 4 + [False]
    gain = mcnemar(before, after)
    assert (gain["gained"], gain["lost"]) == (8, 1)
    assert gain["p_value"] == pytest.approx(2 * (math.comb(9, 8) + math.comb(9, 9)) / 2**9)
    loss = mcnemar(after, before)  # the same disagreement the other way round: the same p, not 1
    assert (loss["gained"], loss["lost"]) == (1, 8) and loss["p_value"] == pytest.approx(gain["p_value"])
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar([True], [])


def test_across_seeds_is_a_paired_t_interval_with_a_wilcoxon_beside_it():
    a, b = [0.30, 0.35, 0.32, 0.31, 0.36], [0.25, 0.30, 0.33, 0.28, 0.29]
    d = across_seeds(a, b)
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 4)
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t(0.975, 4)
    assert d["mean"] == pytest.approx(mean) and d["sd"] == pytest.approx(sd)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((mean - half, mean + half))
    assert 0.04 < d["p_t"] < 0.06
    assert d["p_wilcoxon"] == pytest.approx(0.125)  # 4 of 5 positive, exact two-sided
    assert across_seeds(b, a)["ci_high"] == pytest.approx(-d["ci_low"])  # symmetric: harm shows as clearly as gain
    with pytest.raises(ValueError, match="at least 2"):
        across_seeds([0.1], [0.2])
    assert mean_sd([1.0, 3.0]) == {"mean": 2.0, "sd": math.sqrt(2), "n": 2, "min": 1.0, "max": 3.0}


def test_seeds_without_spread_get_no_t_p_value_but_a_wilcoxon_one():
    d = across_seeds([0.3, 0.3, 0.3], [0.2, 0.2, 0.2])
    assert d["p_t"] is None and d["ci_low"] == d["ci_high"] == pytest.approx(0.1)
    assert d["p_wilcoxon"] == pytest.approx(0.25)  # 3 of 3 positive: 2 / 2**3
    tiny_spread = across_seeds([0.3, 0.31, 0.3], [0.2, 0.21, 0.2])  # float noise is no spread
    assert tiny_spread["p_t"] is None
