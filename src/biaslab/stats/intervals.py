"""The lab's statistics: one model's sampling interval, intervals across trained models, paired
contrasts between cells that share sample seeds, and claim verdicts.

The unit of evidence is the trained model (one ``train_seed``). Two kinds of interval are
kept apart and named wherever they are drawn or tabled:

* **sampling** -- one model's 95% interval over its samples: exact (Clopper-Pearson) for a
  share, and for a paired difference the exact interval that agrees with McNemar's test.
  With one training seed it is the only interval there is, and it says nothing about another
  training run.
* **between models** -- a 95% t-interval over the per-model values (``n_models >= 2``): the
  mean over training seeds, with the spread that another draw of the recipe would show. Its
  standard error is at least ``sqrt(sum se_i^2) / n``, the ``se_i`` read off each model's own
  sampling interval (``sampling_floor``): the variance between models cannot be smaller than
  the sampling variance inside them, and with 3 models whose effects coincide (the same one
  sample of 400 in each) the plain t-interval has zero width.
  Chosen over a two-level bootstrap because a bootstrap over 2-5 models cannot reach its
  nominal coverage (it resamples among so few distinct values), while the t-interval is exact
  for normal per-model values and is what the field reports (``scipy.stats.t``).

Every interval comes from ``scipy.stats`` (``binomtest(...).proportion_ci``,
``ttest_1samp(...).confidence_interval``, ``binomtest`` for McNemar's exact test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: The confidence level of every interval the lab reports.
CONFIDENCE = 0.95
#: ``method`` values (what an interval is), and their legend text (``band_label``).
SAMPLING = "sampling"
BETWEEN_MODELS = "t over models"
NO_INTERVAL = "none"


def band_label(n_models: int, method: str | None = None, confidence: float = CONFIDENCE) -> str:
    """The legend text of an interval: "95% CI over 5 training seeds (t)" or "sampling 95% CI,
    1 training seed: sampling interval only". The one place figures and tables name a band."""
    pct = f"{100 * confidence:.0f}%"
    n = int(n_models)
    if method is None:
        method = BETWEEN_MODELS if n >= 2 else SAMPLING
    if method == BETWEEN_MODELS:
        return f"{pct} CI over {n} training seeds (t)"
    if method == SAMPLING:
        seeds = "1 training seed" if n == 1 else f"{n} training seeds"
        return f"sampling {pct} CI, {seeds}: sampling interval only"
    return f"no interval ({n} training seed{'s' if n != 1 else ''})"


def proportion_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a share ``k / n``: ``scipy.stats.binomtest``'s
    ``proportion_ci(method="exact")``; ``(nan, nan)`` when ``n == 0``."""
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n == 0:
        return (math.nan, math.nan)
    from scipy import stats as sps  # lazily: most jobs that import this never test

    ci = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return (float(ci.low), float(ci.high))


def mean_interval(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float, float]:
    """Mean of ``values`` with its t-interval and the two-sided one-sample t-test p-value
    against 0: ``(mean, low, high, p)``. Fewer than 2 finite values: the mean and NaNs. All
    values equal: a zero-width interval, p 0 (nonzero mean) or 1 (all zero)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (math.nan, math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if len(v) < 2:
        return (mean, math.nan, math.nan, math.nan)
    if np.all(v == v[0]):
        return (mean, mean, mean, 1.0 if mean == 0 else 0.0)
    from scipy import stats as sps  # lazily: most jobs that import this never test

    res = sps.ttest_1samp(v, 0.0)
    ci = res.confidence_interval(confidence_level=confidence)
    return (mean, float(ci.low), float(ci.high), float(res.pvalue))


def interval_p(
    mean: float, low: float, high: float, n: int, confidence: float = CONFIDENCE
) -> float:
    """The two-sided t-test p-value against 0 that goes with a t-interval over ``n`` models
    (``across_models``, its floor included): ``se`` read back from the interval's width."""
    if n < 2 or not np.all(np.isfinite([mean, low, high])):
        return math.nan
    from scipy import stats as sps

    se = (high - low) / (2 * float(sps.t.ppf(0.5 + confidence / 2, n - 1)))
    if se <= 0:
        return 1.0 if mean == 0 else 0.0
    return float(2 * sps.t.sf(abs(mean) / se, n - 1))


def sampling_floor(
    lows: Sequence[float] | None,
    highs: Sequence[float] | None,
    ok: np.ndarray,
    confidence: float = CONFIDENCE,
) -> float:
    """The smallest standard error a mean over the ``ok`` models can have: ``sqrt(sum se_i^2)
    / n``, with ``se_i`` the half-width of model i's own sampling interval over the normal
    quantile. NaN when a model has no interval (then the t-interval stands alone)."""
    if lows is None or highs is None:
        return math.nan
    lo = np.asarray(lows, dtype=np.float64)[ok]
    hi = np.asarray(highs, dtype=np.float64)[ok]
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        return math.nan
    from scipy import stats as sps

    se = (hi - lo) / (2 * float(sps.norm.ppf(0.5 + confidence / 2)))
    return float(np.sqrt(np.sum(se**2)) / len(se))


def across_models(
    values: Sequence[float],
    lows: Sequence[float] | None = None,
    highs: Sequence[float] | None = None,
    confidence: float = CONFIDENCE,
) -> dict[str, float | int | str]:
    """One cell's statistic across its trained models: ``value`` (the mean over models),
    ``ci_low`` / ``ci_high`` and ``method``: with two or more models the t-interval over the
    per-model values (``mean_interval``), its standard error at least ``sampling_floor`` of the
    per-model intervals (``lows`` / ``highs``); with one model that model's own sampling interval
    (``lows`` / ``highs``; NaN when it has none). ``n_models`` counts finite values."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    n = int(ok.sum())
    if n >= 2:
        mean, lo, hi, _p = mean_interval(v[ok], confidence)
        floor = sampling_floor(lows, highs, ok, confidence)
        if np.isfinite(floor) and floor > 0:
            from scipy import stats as sps

            t = float(sps.t.ppf(0.5 + confidence / 2, n - 1))
            if t * floor > (hi - lo) / 2:
                lo, hi = mean - t * floor, mean + t * floor
        return {"value": mean, "ci_low": lo, "ci_high": hi, "n_models": n, "method": BETWEEN_MODELS}
    if n == 1:
        i = int(np.flatnonzero(ok)[0])
        lo = float(np.asarray(lows, dtype=np.float64)[i]) if lows is not None else math.nan
        hi = float(np.asarray(highs, dtype=np.float64)[i]) if highs is not None else math.nan
        method = SAMPLING if np.isfinite(lo) and np.isfinite(hi) else NO_INTERVAL
        return {"value": float(v[i]), "ci_low": lo, "ci_high": hi, "n_models": 1, "method": method}
    return {
        "value": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "n_models": 0,
        "method": NO_INTERVAL,
    }


def paired_binary(
    before: np.ndarray, after: np.ndarray, confidence: float = CONFIDENCE
) -> dict[str, float | int]:
    """A paired comparison of one binary per-sample outcome in two cells that share their
    sample seeds (sample i of ``before`` and of ``after`` start from the same noise).

    ``effect``: the mean paired difference ``after - before`` (the change of the share),
    ``(n_gained - n_lost) / n``; ``p``: McNemar's exact test (``binomtest`` of the discordant
    pairs at 1/2); ``ci_low`` / ``ci_high``: the exact interval consistent with that test --
    the Clopper-Pearson interval [q_lo, q_hi] of the gained share among the discordant pairs,
    mapped to ``(2 q - 1) * n_discordant / n`` (conditional on the number of discordant
    pairs; zero width at 0 when every pair agrees). A Wald or t interval over the paired
    differences would call 5 gains and 0 losses of 100 significant (McNemar p 0.06). Also
    ``n_pairs``, ``n_lost`` (1 before, 0 after: e.g. minority -> majority) and ``n_gained``."""
    b = np.asarray(before, dtype=bool)
    a = np.asarray(after, dtype=bool)
    if b.shape != a.shape or b.ndim != 1:
        raise ValueError(f"paired_binary: outcomes of shapes {b.shape} and {a.shape}")
    n = len(b)
    lost = int((b & ~a).sum())
    gained = int((~b & a).sum())
    out = {"n_pairs": n, "n_lost": lost, "n_gained": gained}
    if n == 0:
        return {"effect": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, **out}
    nd = lost + gained
    if nd == 0:
        return {"effect": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p": 1.0, **out}
    from scipy import stats as sps  # lazily: most jobs that import this never test

    test = sps.binomtest(gained, nd, 0.5)  # McNemar's exact test, and its interval
    q = test.proportion_ci(confidence_level=confidence, method="exact")
    return {
        "effect": (gained - lost) / n,
        "ci_low": (2 * q.low - 1) * nd / n,
        "ci_high": (2 * q.high - 1) * nd / n,
        "p": float(test.pvalue),
        **out,
    }


#: Claim expectations and their sign.
EXPECT_SIGN = {"increase": 1, "decrease": -1}
HELD, REVERSED, INCONCLUSIVE = "held", "reversed", "inconclusive"


def verdict(expect: str, low: float, high: float, n_models: int, min_models: int = 1) -> str:
    """``held`` when the effect's interval lies entirely on the expected side of 0,
    ``reversed`` when entirely on the other side, else ``inconclusive`` (also without an
    interval, or with fewer than ``min_models`` trained models)."""
    if expect not in EXPECT_SIGN:
        raise ValueError(f"expect: {expect!r}, one of {sorted(EXPECT_SIGN)}")
    if n_models < min_models or not (np.isfinite(low) and np.isfinite(high)):
        return INCONCLUSIVE
    s = EXPECT_SIGN[expect]
    lo, hi = sorted((s * low, s * high))
    if lo > 0:
        return HELD
    if hi < 0:
        return REVERSED
    return INCONCLUSIVE
