"""Statistics for paired, binary verdicts and for seeds, all two-sided, all from scipy.

    proportion(k, n)          accuracy with its Wilson 95% interval (scipy's binomtest.proportion_ci)
    mcnemar(before, after)    exact McNemar test on paired verdicts: of the b + c problems where the two
                              disagree, `after` alone passed c of them; p = two-sided binomial test of
                              c against Binomial(b + c, 1/2) (scipy.stats.binomtest)
    across_seeds(a, b)        per-seed values of two arms paired by seed: mean difference, its 95% t
                              interval and the two-sided paired t-test p (scipy.stats.ttest_rel), with the
                              Wilcoxon signed-rank p beside it (scipy's "auto": exact without ties, a
                              permutation test with them); no t p-value when the seeds do not vary
    paired_difference(b, a)   a - b over paired items (scores of one benchmark's items): mean, 95% t interval
                              and two-sided p (scipy.stats.ttest_rel), with exact McNemar for 0/1 scores
"""

from __future__ import annotations

import math
from typing import Any


def proportion(successes: int, n: int) -> dict[str, Any]:
    """{"accuracy", "ci_low", "ci_high", "n", "successes"}: the Wilson 95% interval (0..1 for n = 0)."""
    from scipy.stats import binomtest

    if n == 0:
        return {"accuracy": 0.0, "ci_low": 0.0, "ci_high": 1.0, "n": 0, "successes": 0}
    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"accuracy": successes / n, "ci_low": float(ci.low), "ci_high": float(ci.high), "n": n, "successes": successes}


def mcnemar(before: list[bool], after: list[bool]) -> dict[str, Any]:
    """Exact two-sided McNemar test: `gained` problems only `after` passed, `lost` only `before` passed."""
    from scipy.stats import binomtest

    if len(before) != len(after):
        raise ValueError(f"paired verdicts need equal lengths, got {len(before)} and {len(after)}")
    gained = sum(bool(a) and not b for b, a in zip(before, after))
    lost = sum(bool(b) and not a for b, a in zip(before, after))
    p = binomtest(gained, gained + lost, 0.5, alternative="two-sided").pvalue if gained + lost else 1.0
    return {"gained": gained, "lost": lost, "p_value": float(p), "test": "exact McNemar, two-sided"}


def across_seeds(a: list[float], b: list[float]) -> dict[str, Any]:
    """a - b over seeds (paired by position): mean, sd, 95% t interval, two-sided t-test and Wilcoxon p."""
    from scipy.stats import ttest_rel, wilcoxon

    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"need two equal-length lists of at least 2 seeds, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    out: dict[str, Any] = {"n": len(diffs), "differences": diffs, "mean": mean, "sd": sd}
    nonzero = [d for d in diffs if abs(d) > 1e-12]
    # scipy's "auto" is exact without ties and a permutation test with them (accuracy differences often tie)
    out["p_wilcoxon"] = float(wilcoxon(nonzero, alternative="two-sided", method="auto").pvalue) if nonzero else 1.0
    if sd <= 1e-12 * max(1.0, abs(mean)):  # no spread: a t interval says nothing
        out.update(ci_low=mean, ci_high=mean, p_t=None)
        return out
    test = ttest_rel(a, b)
    ci = test.confidence_interval(0.95)
    out.update(ci_low=float(ci.low), ci_high=float(ci.high), p_t=float(test.pvalue))
    return out


def paired_difference(before: list[float], after: list[float]) -> dict[str, Any]:
    """after - before over paired items: the mean difference, its 95% t interval and two-sided p (scipy's
    ttest_rel); with 0/1 scores also the exact McNemar test (mcnemar above)."""
    import numpy as np
    from scipy.stats import ttest_rel

    if len(before) != len(after) or not before:
        raise ValueError(f"paired scores need equal, non-zero lengths, got {len(before)} and {len(after)}")
    diffs = np.asarray(after) - np.asarray(before)
    out: dict[str, Any] = {"n": len(diffs), "difference": float(diffs.mean())}
    if np.ptp(diffs) == 0:  # every item moved by the same amount (usually none): no spread for a t interval
        out.update(ci_low=float(diffs[0]), ci_high=float(diffs[0]), p_t=1.0 if diffs[0] == 0 else None)
    else:
        test = ttest_rel(after, before)
        ci = test.confidence_interval(0.95)
        out.update(ci_low=float(ci.low), ci_high=float(ci.high), p_t=float(test.pvalue))
    if set(before) | set(after) <= {0.0, 1.0}:
        out["mcnemar"] = mcnemar([b == 1.0 for b in before], [a == 1.0 for a in after])
    return out


def mean_sd(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "sd": sd, "n": n, "min": min(values), "max": max(values)}
