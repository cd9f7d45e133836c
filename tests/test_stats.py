"""biaslab.stats.intervals and biaslab.stats.contrasts: intervals against scipy and closed forms,
paired contrasts on synthetic per-sample outcomes of several fake models with a planted effect
(interval coverage over repeats, the claim verdicts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from biaslab.stats import intervals as stats
from biaslab.stats.claims import between_pairs, claims_markdown, evaluate_claims
from biaslab.stats.contrasts import aggregate, contrast_pairs, contrasts, vary_value


def test_proportion_interval_is_clopper_pearson():
    for k, n in [(0, 10), (3, 10), (10, 10), (17, 64), (1, 1)]:
        lo, hi = stats.proportion_interval(k, n)
        want_lo = 0.0 if k == 0 else sps.beta.ppf(0.025, k, n - k + 1)
        want_hi = 1.0 if k == n else sps.beta.ppf(0.975, k + 1, n - k)
        assert lo == pytest.approx(want_lo, abs=1e-9)
        assert hi == pytest.approx(want_hi, abs=1e-9)
    assert all(np.isnan(stats.proportion_interval(0, 0)))
    with pytest.raises(ValueError):
        stats.proportion_interval(5, 3)


def test_mean_interval_is_the_t_interval():
    v = np.array([0.1, 0.3, 0.2, 0.5])
    mean, lo, hi, p = stats.mean_interval(v)
    want = sps.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=sps.sem(v))
    assert (mean, lo, hi) == pytest.approx((v.mean(), *want))
    assert p == pytest.approx(sps.ttest_1samp(v, 0).pvalue)
    assert stats.mean_interval([2.0, 2.0]) == (2.0, 2.0, 2.0, 0.0)
    m, lo, hi, p = stats.mean_interval([1.0])
    assert m == 1.0 and np.isnan(lo) and np.isnan(hi)


def test_across_models_names_its_interval():
    one = stats.across_models([0.4], [0.3], [0.5])
    assert (one["value"], one["ci_low"], one["ci_high"], one["n_models"]) == (0.4, 0.3, 0.5, 1)
    assert one["method"] == stats.SAMPLING
    assert stats.band_label(1, one["method"]) == (
        "sampling 95% CI, 1 training seed: sampling interval only"
    )
    v = [0.1, 0.2, 0.3, 0.2, 0.2]
    five = stats.across_models(v, [x - 0.01 for x in v], [x + 0.01 for x in v])
    assert five["method"] == stats.BETWEEN_MODELS and five["n_models"] == 5
    want = sps.t.interval(0.95, 4, loc=np.mean(v), scale=sps.sem(v))
    assert (five["ci_low"], five["ci_high"]) == pytest.approx(want)  # the floor is below it
    assert stats.band_label(5) == "95% CI over 5 training seeds (t)"


def test_across_models_interval_is_never_narrower_than_the_sampling_error():
    """Three models that each moved by the same one sample of 400 (McNemar p 1 in each): the
    t-interval over them has zero width; the floor from their own paired intervals keeps the
    verdict inconclusive, and the p-value that goes with the interval agrees."""
    one = stats.paired_binary(np.zeros(400, bool), np.r_[True, np.zeros(399, bool)])
    a = stats.across_models([one["effect"]] * 3, [one["ci_low"]] * 3, [one["ci_high"]] * 3)
    assert a["value"] == pytest.approx(1 / 400)
    assert a["ci_low"] < 0 < a["ci_high"]
    assert stats.verdict("increase", a["ci_low"], a["ci_high"], 3) == stats.INCONCLUSIVE
    assert stats.interval_p(a["value"], a["ci_low"], a["ci_high"], 3) > 0.05
    z = sps.norm.ppf(0.975)
    se = (one["ci_high"] - one["ci_low"]) / (2 * z) * np.sqrt(3) / 3
    assert a["ci_high"] - a["value"] == pytest.approx(sps.t.ppf(0.975, 2) * se)
    # large effects with small sampling error keep their t-interval
    strong = stats.across_models([0.20, 0.25, 0.22], [0.19, 0.24, 0.21], [0.21, 0.26, 0.23])
    assert strong["ci_low"] > 0
    # without per-model intervals there is no floor
    bare = stats.across_models([0.0025] * 3)
    assert bare["ci_low"] == bare["ci_high"] == pytest.approx(0.0025)


def test_paired_binary_counts_flips_and_mcnemar():
    before = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 0], bool)
    after = np.array([0, 0, 0, 0, 1, 0, 0, 1, 1, 0], bool)
    r = stats.paired_binary(before, after)
    assert (r["n_lost"], r["n_gained"], r["n_pairs"]) == (4, 1, 10)
    assert r["effect"] == pytest.approx(-0.3)
    assert r["p"] == pytest.approx(sps.binomtest(1, 5, 0.5).pvalue)
    same = stats.paired_binary(before, before)
    assert same["effect"] == 0 and same["p"] == 1.0 and same["ci_low"] == same["ci_high"] == 0


@pytest.mark.parametrize(
    ("expect", "lo", "hi", "n", "want"),
    [
        ("decrease", -0.3, -0.1, 5, "held"),
        ("decrease", 0.1, 0.3, 5, "reversed"),
        ("decrease", -0.1, 0.1, 5, "inconclusive"),
        ("increase", 0.1, 0.3, 5, "held"),
        ("increase", 0.1, 0.3, 1, "inconclusive"),  # below min_models
        ("increase", np.nan, np.nan, 5, "inconclusive"),
    ],
)
def test_verdict(expect, lo, hi, n, want):
    assert stats.verdict(expect, lo, hi, n, min_models=2) == want


# --------------------------------------------------------------------------------------------
# synthetic runs: M models x {depth 2, depth 4} cells, per-sample outcomes sharing seeds
# --------------------------------------------------------------------------------------------
GRID = {
    "dataset": "mnist69",
    "minority_fraction": 0.1,
    "sampler": "ddim",
    "steps": 25,
    "n_samples": 0,
    "sample_seed": 0,
}


def fake_run(model_effects, n=300, base=0.3, seed=0, learned=None):
    """Per-sample minority outcomes of each model at depth 2 (rate ``base`` + the model's
    offset) and depth 4 (plus its planted effect), coupled through shared uniforms (the same
    sample seeds); the per-cell metrics tables."""
    rng = np.random.default_rng(seed)
    preds, metrics = [], []
    for m, effect in enumerate(model_effects):
        u = rng.random(n)
        offset = rng.normal(0, 0.03)
        conf = np.where(rng.random(n) < 0.1, 0.5, 0.99)  # 10% unrecognisable samples
        for depth, p in (("2", base + offset), ("4", base + offset + effect)):
            grid = {**GRID, "n_samples": n, "depth": depth, "train_seed": m}
            is_min = u < p
            preds.append(
                pd.DataFrame(
                    {
                        **grid,
                        "sample_index": np.arange(n),
                        "seed": 1000 + np.arange(n),
                        "is_minority": is_min,
                        "confidence": conf,
                    }
                )
            )
            ok = True if learned is None else learned[m]
            k = int(is_min.sum())
            lo, hi = stats.proportion_interval(k, n)
            metrics.append(
                pd.DataFrame(
                    [
                        {
                            **grid,
                            "metric": "minority_share",
                            "value": k / n,
                            "ci_low": lo,
                            "ci_high": hi,
                            "probe_learned": ok,
                        },
                        {
                            **grid,
                            "metric": "diversity_lpips",
                            "value": 0.2 + 0.1 * (depth == "4"),
                            "ci_low": np.nan,
                            "ci_high": np.nan,
                            "probe_learned": ok,
                        },
                    ]
                )
            )
    return pd.concat(metrics, ignore_index=True), pd.concat(preds, ignore_index=True)


def test_contrast_pairs_pick_the_reference():
    cells = pd.DataFrame(
        [
            {"depth": "2", "guidance": 0.0, "intervene": 1.0, "intervene_mode": "none"},
            {"depth": "4", "guidance": 0.0, "intervene": 1.0, "intervene_mode": "none"},
            {"depth": "2", "guidance": 3.0, "intervene": 1.0, "intervene_mode": "none"},
            {"depth": "2", "guidance": 0.0, "intervene": 16.0, "intervene_mode": "probability"},
        ]
    )
    got = {(c, r, k) for c, r, k in contrast_pairs(cells)}
    assert ("depth", ("2", 0.0, 1.0, "none"), ("4", 0.0, 1.0, "none")) in got
    assert ("guidance", ("2", 0.0, 1.0, "none"), ("2", 3.0, 1.0, "none")) in got
    assert ("intervene", ("2", 0.0, 1.0, "none"), ("2", 0.0, 16.0, "probability")) in got
    assert len(got) == 3


def test_joint_contrast_pairs_change_every_column():
    """A joint set pairs the cell at every column's reference with the cells that differ in
    all of them, within each group of the other columns; single-column pairs stay."""
    cells = pd.DataFrame(
        [
            {"rho": r, "steps": st, "s_churn": ch}
            for r in (0.8, 0.9)
            for st in (6, 160)
            for ch in (0.0, 60.0)
        ]
    )
    joint = [p for p in contrast_pairs(cells, [("steps", "s_churn")]) if "+" in p[0]]
    assert sorted(joint) == [
        ("steps+s_churn", (0.8, 6, 0.0), (0.8, 160, 60.0)),
        ("steps+s_churn", (0.9, 6, 0.0), (0.9, 160, 60.0)),
    ]
    assert len(contrast_pairs(cells, [("steps", "s_churn")])) == len(contrast_pairs(cells)) + 2
    assert vary_value("steps+s_churn", {"steps": 160, "s_churn": 60.0}) == "160/60"
    assert vary_value(["steps", "s_churn"], [6, 0]) == vary_value("steps", 6) + "/0"


def test_joint_claim_verdict():
    """A claim over a joint contrast matches its rows by the joined values."""
    metrics, preds = fake_run([-0.15] * 4, seed=7)
    for t in (metrics, preds):
        t["s_churn"] = np.where(t["depth"] == "4", 60.0, 0.0)
    claim = {**CLAIM, "vary": ["depth", "s_churn"], "from": ["2", 0], "to": ["4", 60]}
    table = contrasts(metrics, preds, 0.9, joint=[("depth", "s_churn")])
    c = evaluate_claims(table, [claim])
    assert c.iloc[0]["verdict"] == "held" and c.iloc[0]["n_models"] == 4
    assert c.iloc[0]["statement"] == "minority_share decreases from depth+s_churn 2/0 to 4/60"


def test_between_pairs_compare_two_non_reference_values():
    """A claim between two values of a column, neither its reference (guidance 1 -> 3), gets
    its own pair per group; pairs with the reference are not repeated."""
    cells = pd.DataFrame([{"rho": r, "guidance": w} for r in (0.8, 0.9) for w in (0.0, 1.0, 3.0)])
    plain = contrast_pairs(cells)
    extra = contrast_pairs(cells, between=[("guidance", 1, 3), ("guidance", 0, 3)])
    assert sorted(set(extra) - set(plain)) == [
        ("guidance", (0.8, 1.0), (0.8, 3.0)),
        ("guidance", (0.9, 1.0), (0.9, 3.0)),
    ]
    assert len(extra) == len(plain) + 2
    claims = [{**CLAIM, "vary": "guidance", "from": 1, "to": 3}, {**CLAIM, "vary": ["a", "b"]}]
    assert between_pairs(claims) == [("guidance", 1, 3)]


def test_between_claim_verdict():
    """The claim guidance 1 -> 3 is evaluated on its own pair; without the pair the claims
    layer says which contrasts the run has."""
    metrics, preds = fake_run([-0.15] * 4, seed=5)
    for t in (metrics, preds):
        t["guidance"] = np.where(t["depth"] == "4", 3.0, 1.0)
        t["depth"] = "2"
    zero = [t[t["guidance"] == 1.0].assign(guidance=0.0) for t in (metrics, preds)]
    metrics, preds = pd.concat([metrics, zero[0]]), pd.concat([preds, zero[1]])
    claim = {**CLAIM, "vary": "guidance", "from": 1, "to": 3}
    table = contrasts(metrics, preds, 0.9, between=between_pairs([claim]))
    c = evaluate_claims(table, [claim])
    assert c.iloc[0]["verdict"] == "held" and c.iloc[0]["n_models"] == 4
    assert c.iloc[0]["effect"] < -0.1
    with pytest.raises(ValueError, match="guidance 0 -> 3"):
        evaluate_claims(contrasts(metrics, preds, 0.9), [claim])


def test_contrasts_recover_a_planted_effect_with_its_flips():
    metrics, preds = fake_run([-0.1] * 5, n=400)
    table = contrasts(metrics, preds, confidence_threshold=0.9)
    across = table[(table["level"] == "across") & (table["metric"] == "minority_share")]
    assert len(across) == 1
    row = across.iloc[0]
    assert (row["vary"], row["from_value"], row["to_value"]) == ("depth", "2", "4")
    assert row["n_models"] == 5 and row["k_same_sign"] == 5
    assert row["ci_low"] < -0.1 < row["ci_high"] and row["ci_high"] < 0
    assert row["band"] == "95% CI over 5 training seeds (t)"
    # coupled outcomes: flips only from minority to majority
    assert row["n_lost"] > 0 and row["n_gained"] == 0
    models = table[(table["level"] == "model") & (table["metric"] == "minority_share")]
    assert len(models) == 5 and (models["p"] < 0.05).all()
    # the robust readout counts pairs recognised in both cells
    conf = table[(table["level"] == "model") & (table["metric"] == "minority_share_confident")]
    assert (conf["n_pairs"] < 400).all()
    cell = table[(table["level"] == "across") & (table["metric"] == "diversity_lpips")].iloc[0]
    assert cell["effect"] == pytest.approx(0.1) and cell["ci_low"] == pytest.approx(0.1)


def test_between_model_interval_covers_the_true_effect():
    """The across-model t-interval covers the recipe's mean effect in about 95% of runs when
    each trained model has its own effect (models differ: tau = 0.05)."""
    rng = np.random.default_rng(1)
    delta, covered, repeats = -0.08, 0, 120
    for r in range(repeats):
        effects = delta + rng.normal(0, 0.05, size=4)
        metrics, preds = fake_run(effects, n=150, seed=r)
        t = contrasts(metrics, preds, 0.9)
        row = t[(t["level"] == "across") & (t["metric"] == "minority_share")].iloc[0]
        covered += row["ci_low"] <= delta <= row["ci_high"]
    assert 0.88 <= covered / repeats <= 0.99, covered / repeats


CLAIM = {
    "id": "deeper-amplifies",
    "vary": "depth",
    "from": "2",
    "to": "4",
    "metric": "minority_share",
    "expect": "decrease",
    "min_models": 3,
}


@pytest.mark.parametrize(
    ("effects", "want"),
    [
        ([-0.15] * 5, "held"),
        ([0.15] * 5, "reversed"),
        ([0.0] * 5, "inconclusive"),
        ([-0.15] * 2, "inconclusive"),
    ],  # 2 models < min_models 3
)
def test_claim_verdicts(effects, want):
    metrics, preds = fake_run(effects, n=300, seed=3)
    claims = evaluate_claims(contrasts(metrics, preds, 0.9), [CLAIM])
    assert len(claims) == 1
    assert claims.iloc[0]["verdict"] == want
    assert "McNemar p" in claims.iloc[0]["per_model"]
    assert want in claims_markdown(claims)


def test_claims_learned_only_and_missing_contrast():
    metrics, preds = fake_run([-0.15] * 4, seed=4, learned=[True, True, False, True])
    table = contrasts(metrics, preds, 0.9)
    c = evaluate_claims(table, [{**CLAIM, "learned_only": True}]).iloc[0]
    assert c["n_models"] == 3 and c["verdict"] == "held"
    with pytest.raises(ValueError, match=r"claims\[x\]: no contrast depth 2 -> 6"):
        evaluate_claims(table, [{**CLAIM, "id": "x", "to": "6"}])


@pytest.mark.parametrize(
    ("threshold", "key", "want"),
    [(0.2, "at_least", "held"), (0.4, "at_least", "reversed"), (0.3, "at_most", "inconclusive")],
)
def test_level_claim_verdicts(threshold, key, want):
    """A level claim compares every matching cell's across-model interval (t over models)
    with a threshold: minority shares near 0.3 (depth 2) lie above 0.2 and below 0.4."""
    metrics, preds = fake_run([0.0] * 5, n=2000, seed=6)
    claim = {
        "id": "lvl",
        "metric": "minority_share",
        key: threshold,
        "where": {"depth": "2"},
        "min_models": 5,
    }
    c = evaluate_claims(contrasts(metrics, preds, 0.9), [claim], metrics)
    assert len(c) == 1 and c.iloc[0]["kind"] == "level"
    row = c.iloc[0]
    vals = metrics[(metrics.metric == "minority_share") & (metrics.depth == "2")]["value"]
    assert row["effect"] == pytest.approx(vals.mean())
    lo, hi = sps.t.interval(0.95, 4, loc=vals.mean(), scale=sps.sem(vals))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi))
    assert row["verdict"] == want
    assert row["statement"] == f"minority_share {'>=' if key == 'at_least' else '<='} {threshold}"
    md = claims_markdown(c)
    assert want in md and "seed 0: 0." in md
    # two cells without where: one verdict per cell; too few models: inconclusive
    both = evaluate_claims(contrasts(metrics, preds, 0.9), [{**claim, "where": {}}], metrics)
    assert sorted(both["depth"]) == ["2", "4"]
    few = evaluate_claims(None, [{**claim, "min_models": 6}], metrics)
    assert few.iloc[0]["verdict"] == "inconclusive"
    with pytest.raises(ValueError, match=r"claims\[lvl\]: no cell has metric 'fid'"):
        evaluate_claims(None, [{**claim, "metric": "fid"}], metrics)


def test_aggregate_keeps_models_apart_from_cells():
    metrics, _ = fake_run([-0.1, -0.05, -0.12], seed=5)
    agg = aggregate(metrics)
    row = agg[(agg["metric"] == "minority_share") & (agg["depth"] == "4")].iloc[0]
    vals = metrics[(metrics["metric"] == "minority_share") & (metrics["depth"] == "4")]["value"]
    assert row["n_models"] == 3 and row["n_learned"] == 3
    assert row["value"] == pytest.approx(vals.mean())
    assert row["model_min"] == vals.min() and row["model_max"] == vals.max()
    assert row["band"] == "95% CI over 3 training seeds (t)"
    assert "train_seed" not in agg.columns
    one = aggregate(metrics[metrics["train_seed"] == 0])
    r1 = one[(one["metric"] == "minority_share") & (one["depth"] == "4")].iloc[0]
    assert r1["band"].startswith("sampling 95% CI, 1 training seed")


def test_schema_claims_enums_are_the_registries():
    import yaml

    from biaslab.plan.checks import SCHEMA_FILE
    from biaslab.stats.contrasts import CELL_METRICS, CONTRASTS, SAMPLE_METRICS

    item = yaml.safe_load(SCHEMA_FILE.read_text())["properties"]["claims"]["items"]
    assert item["properties"]["vary"]["oneOf"][0]["enum"] == list(CONTRASTS)
    assert item["properties"]["vary"]["oneOf"][1]["items"]["enum"] == list(CONTRASTS)
    assert item["properties"]["metric"]["enum"] == [*SAMPLE_METRICS, *CELL_METRICS]


def test_paired_interval_agrees_with_mcnemar():
    """The paired interval excludes 0 exactly when McNemar's exact test rejects at 5% (a t or
    Wald interval calls 5 gains and 0 losses significant, p 0.0625)."""
    five = stats.paired_binary(np.zeros(100, bool), np.arange(100) < 5)
    assert five["p"] == pytest.approx(0.0625) and five["ci_low"] < 0 < five["ci_high"]
    for gained in range(25):
        for lost in range(25):
            if gained + lost == 0:
                continue
            before = np.array([1] * lost + [0] * gained + [0] * 10, bool)
            after = np.array([0] * lost + [1] * gained + [0] * 10, bool)
            r = stats.paired_binary(before, after)
            assert r["ci_low"] <= r["effect"] <= r["ci_high"]
            assert (r["ci_low"] > 0 or r["ci_high"] < 0) == (r["p"] < 0.05), (gained, lost)
