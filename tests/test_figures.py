"""Fast tests of the figure functions (biaslab.figures) and the Fig. 3 toy (biaslab.figures.toy)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

from biaslab import figures
from biaslab.base.columns import GRID_COLUMNS
from biaslab.base.io import save_figure
from biaslab.figures import toy
from biaslab.figures.common import facet_title, replicate_summary
from biaslab.plan.figures import FIGURE_TABLE, PER, WHEN, draw_function, figure_options
from biaslab.sampling.registry import setting_label

matplotlib.use("Agg")

FRACTIONS = (0.1, 0.3)
DEPTHS = ("4", "2", "2L")  # deliberately unsorted: figures must order them 2, 2L, 4
SEEDS = (0, 1)
SETTINGS = (("ddpm", 1000, 1.0), ("ddim", 50, 0.0))
KS = (1, 2, 5, 10)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _grid_rows():
    for frac, depth, seed, (sampler, steps, eta) in itertools.product(
        FRACTIONS, DEPTHS, SEEDS, SETTINGS
    ):
        yield {
            "dataset": "mnist",
            "source": "torchvision",
            "resolution": 28,
            "minority_fraction": frac,
            "depth": depth,
            "width": 1.0,
            "train_seed": seed,
            "train_steps": 1000,
            "objective": "epsilon",
            "beta_schedule": "linear",
            "sampler": sampler,
            "steps": steps,
            "eta": eta,
            "timestep_spacing": "trailing",
            # knobs off, unconditional: as the pipeline writes the depth family
            "s_churn": 0.0,
            "guidance": 0.0,
            "bypass": 0.0,
            "bypass_schedule": "constant",
            "intervene": 1.0,
            "intervene_mode": "none",
            "s_min": 0.05,
            "s_max": 50.0,
            "s_noise": 1.003,
            "rho_data": np.nan,
            "rho_right": np.nan,
            "num_classes": np.nan,
            "n_samples": 500,
            "sample_seed": 0,
        }


def make_metrics(low_conf_depth: str | None = "4") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []

    def add(grid, metric, value, *, backbone=None, k=None, ci=(np.nan, np.nan), n=500):
        rows.append(
            {
                **grid,
                "metric": metric,
                "backbone": backbone,
                "k": k,
                "value": value,
                "ci_low": ci[0],
                "ci_high": ci[1],
                "n": n,
            }
        )

    for g in _grid_rows():
        d = DEPTHS.index(g["depth"])
        share = max(g["minority_fraction"] * (1 - 0.2 * d) + rng.normal(0, 0.01), 0.0)
        add(g, "minority_share", share, ci=(max(share - 0.03, 0), share + 0.03))
        train_share = g["minority_fraction"] + 0.002
        add(g, "training_minority_share", train_share)
        add(g, "amplification", train_share - share)
        conf = 0.8 if g["depth"] == low_conf_depth else 0.97
        add(g, "confident_share", conf, ci=(conf - 0.02, conf + 0.02))
        add(g, "mean_confidence", conf)
        add(g, "diversity_lpips", 0.3 - 0.02 * d + rng.normal(0, 0.005), backbone="alex")
        for k in KS:
            add(g, "knn_cosine", 0.8 + 0.02 * d - 0.01 * k, backbone="dinov2", k=k)
            add(g, "knn_l2", 5.0 - 0.3 * d + 0.1 * k, k=k)
    df = pd.DataFrame(rows)
    df["k"] = df["k"].astype("Int64")
    return df


def make_log() -> pd.DataFrame:
    rows = []
    for frac, depth, seed in itertools.product(FRACTIONS, DEPTHS, SEEDS):
        for step in range(0, 200, 5):
            rows.append(
                {
                    "dataset": "mnist",
                    "minority_fraction": frac,
                    "depth": depth,
                    "width": 1.0,
                    "train_seed": seed,
                    "step": step,
                    "loss": 1.0 / (1 + step) + 0.01 * (seed + 1),
                    "lr": 1e-4,
                    "images_per_s": 100.0,
                }
            )
    return pd.DataFrame(rows)


def _check_saves(fig: Figure, tmp_path) -> None:
    paths = [tmp_path / "out" / "fig.png", tmp_path / "out" / "fig.pdf"]
    save_figure(fig, paths)
    for p in paths:
        assert p.exists() and p.stat().st_size > 0
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_synthetic_table_has_grid_columns():
    assert set(GRID_COLUMNS) <= set(make_metrics().columns)


# ---------------------------------------------------------------- registry and helpers
WORKFLOW = Path(__file__).resolve().parents[1] / "workflow"


def _figure_rules() -> dict[str, str]:
    """Rule name -> text of every rule in the rule files that writes under results/figures/."""
    rules = {}
    for path in (WORKFLOW / "rules").glob("*.smk"):
        for name, body in re.findall(
            r"^\s*rule (\w+):\n(.*?)(?=^\s*rule |\Z)", path.read_text(), re.M | re.S
        ):
            if "figure(" in body:
                rules[name] = body
    return rules


def test_figure_table_names_every_figure_once():
    """The table of figures (biaslab.plan.figures) is the one list: every row draws with a
    real function and has a caption; a row without a table has its own rule; every figure
    rule of the workflow is a row."""
    names = [spec.name for spec in FIGURE_TABLE]
    assert len(names) == len(set(names)) >= 20
    assert {
        "fig4_minority_vs_depth",
        "fig_bypass",
        "figA_minority_seeds",
        "fig_knob_effects",
    } <= set(names)
    for spec in FIGURE_TABLE:
        assert callable(draw_function(spec.name)), spec.name
        assert (WORKFLOW / "report" / spec.caption).is_file(), spec.caption
        assert spec.when in WHEN and (spec.per is None or spec.per in PER), spec.name
        assert (spec.per is None) == (spec.stem is None or "{" not in spec.stem), spec.name
    custom = set(_figure_rules())
    assert {s.name for s in FIGURE_TABLE if s.table is None} - {"figA_minority_seeds"} <= custom
    assert custom <= set(names) | {"fig3_toy"}, custom - set(names)
    # figA is drawn by the fig5 rule (one job draws both grids of a skew and seed)
    assert "figA_minority_seeds" in _figure_rules()["fig5_same_seed"]


def test_registry_depth_figures_use_the_depth_family():
    m = make_metrics()
    m = m[m.metric.isin(["minority_share", "diversity_lpips"])]
    conditional = m.assign(num_classes=3.0, value=0.99)
    bypassed = m.assign(bypass=0.5, value=0.99)
    intervened = m.assign(intervene=3.0, intervene_mode="probability", value=0.99)
    fig = draw_function("fig4_minority_vs_depth")(pd.concat([m, conditional, bypassed, intervened]))
    ref = figures.fig_minority_vs_depth(m)
    assert len(fig.get_axes()) == len(ref.get_axes())
    for ax, ax_ref in zip(fig.get_axes(), ref.get_axes(), strict=True):
        for line, line_ref in zip(ax.get_lines(), ax_ref.get_lines(), strict=True):
            np.testing.assert_allclose(line.get_ydata(), line_ref.get_ydata())


# what biaslab.figures._setting_label printed before the labels moved to biaslab.sampling.registry
OLD_LABELS = [
    ({"sampler": "ddpm", "steps": 1000, "eta": 1.0, "s_churn": 0.0}, "ddpm, 1000 steps, η=1"),
    (
        {"sampler": "heun", "steps": 18, "eta": 0.0, "s_churn": 40.0, "guidance": 0.0},
        "heun, 18 steps, S_churn=40",
    ),
    (
        {"sampler": "euler", "steps": 10, "eta": np.nan, "s_churn": 0.0},
        "euler, 10 steps, S_churn=0",
    ),
    ({"sampler": "ddim", "steps": 50, "eta": 0.0, "guidance": 3.0}, "ddim, 50 steps, η=0, w=3"),
    (
        {
            "sampler": "ddim",
            "steps": 20,
            "eta": 0.5,
            "s_churn": np.nan,
            "guidance": 0.0,
            "bypass": 0.5,
            "bypass_schedule": "linear",
        },
        "ddim, 20 steps, η=0.5, bypass p=0.5 ramped",
    ),
    (
        {"sampler": "ddim", "steps": 20, "eta": 0.0, "bypass": 1.0, "bypass_schedule": "constant"},
        "ddim, 20 steps, η=0, bypass p=1",
    ),
    (
        {
            "sampler": "dpmpp",
            "steps": np.float64(25),
            "eta": 0.0,
            "s_churn": 5.0,
            "guidance": np.nan,
        },
        "dpmpp, 25 steps",
    ),
    ({"steps": 5, "eta": 1.0}, "5 steps"),
    ({}, ""),
]


@pytest.mark.parametrize(("row", "label"), OLD_LABELS)
def test_setting_label_as_before(row, label):
    assert setting_label(row) == label
    assert facet_title({"dataset": "mnist", **row}) == " | ".join(p for p in ("mnist", label) if p)
    assert setting_label(pd.Series(row, dtype=object).to_dict()) == label


def test_replicate_summary():
    """The aggregate over trained models: a t-interval over the models with two or more, the
    one model's own (sampling) interval with one; rows of one model are averaged first."""
    rep = pd.DataFrame(
        {
            "depth": ["2", "2", "4", "6", "6", "8", "8", "8"],
            "train_seed": [0, 1, 0, 0, 1, 0, 0, 1],
            "value": [0.2, 0.4, 0.5, np.nan, 0.7, 0.1, 0.3, 0.6],
            "ci_low": [0.1, 0.3, 0.45, 0.0, 0.6, 0.0, 0.2, 0.5],
            "ci_high": [0.3, 0.5, 0.6, 1.0, 0.9, 0.2, 0.4, 0.7],
        }
    )
    s = replicate_summary(rep, ["depth"]).set_index("depth")
    lo, hi = scipy_stats.t.interval(0.95, 1, loc=0.3, scale=scipy_stats.sem([0.2, 0.4]))
    assert s.loc["2", "mean"] == pytest.approx(0.3) and s.loc["2", "n_models"] == 2
    assert s.loc["2", ["lo", "hi"]].tolist() == pytest.approx([lo, hi])
    assert s.loc["2", ["err_lo", "err_hi"]].tolist() == pytest.approx([0.3 - lo, hi - 0.3])
    assert s.loc["2", "method"] == "t over models"
    assert s.loc["2", "band"] == "95% CI over 2 training seeds (t)"
    # one model: its own interval
    assert s.loc["4", ["lo", "hi"]].tolist() == [0.45, 0.6]
    assert s.loc["4", ["err_lo", "err_hi"]].tolist() == pytest.approx([0.05, 0.1])
    assert s.loc["4", "band"].startswith("sampling 95% CI, 1 training seed")
    assert s.loc["6", "mean"] == 0.7 and s.loc["6", "n_models"] == 1  # NaN values are skipped
    # two rows of model 0 (another sample seed, say) are one model, not two replicates
    assert s.loc["8", "n_models"] == 2 and s.loc["8", "mean"] == pytest.approx(0.4)
    cells = rep.rename(columns={"value": "m", "ci_low": "m_lo", "ci_high": "m_hi"})
    t = replicate_summary(cells, ["depth"], value="m", lo="m_lo", hi="m_hi")
    pd.testing.assert_frame_equal(t, s.reset_index())
    # a share's interval is cut to [0, 1]
    wide = replicate_summary(rep[rep.depth == "8"], ["depth"], bounds=(0.0, 1.0))
    assert wide["lo"].iloc[0] == 0.0 and wide["hi"].iloc[0] == 1.0


# ---------------------------------------------------------------- Fig. 4
def test_fig_minority_vs_depth_structure(tmp_path):
    fig = figures.fig_minority_vs_depth(make_metrics())
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert len(axes) == 2 * len(SETTINGS)
    for r in range(len(SETTINGS)):
        left, right = axes[2 * r], axes[2 * r + 1]
        assert sum(isinstance(c, ErrorbarContainer) for c in left.containers) == len(FRACTIONS)
        assert sum(isinstance(c, ErrorbarContainer) for c in right.containers) == len(FRACTIONS)
        dashed = [ln for ln in left.get_lines() if ln.get_linestyle() == "--"]
        assert len(dashed) == len(FRACTIONS)
        # reference lines at the actual training share, in percent
        refs = sorted(ln.get_ydata()[0] for ln in dashed)
        assert refs == pytest.approx([100 * (f + 0.002) for f in FRACTIONS])
        assert [t.get_text() for t in left.get_xticklabels()] == ["2", "2L", "4"]
        labels = [t.get_text() for t in left.get_legend().get_texts()]
        assert "10% minority in training" in labels
        assert "30% minority in training" in labels
        assert any(lab.startswith("hollow") for lab in labels)
        assert "alex" in right.get_ylabel()
    titles = {ax.get_title() for ax in axes}
    assert any("ddim, 50 steps, η=0" in t for t in titles)
    assert any("ddpm, 1000 steps, η=1" in t for t in titles)
    _check_saves(fig, tmp_path)


def test_fig_minority_vs_depth_mean_over_seeds_and_single_seed_ci():
    m = make_metrics()
    fig = figures.fig_minority_vs_depth(m)
    left = fig.get_axes()[0]  # first setting sorted: ddim
    sub = m[(m.metric == "minority_share") & (m.sampler == "ddim") & (m.minority_fraction == 0.1)]
    expected = 100 * sub.groupby("depth")["value"].mean().loc[["2", "2L", "4"]].to_numpy()
    line = next(c for c in left.containers if isinstance(c, ErrorbarContainer))[0]
    np.testing.assert_allclose(line.get_ydata(), expected)
    # one seed only: no faint points needed, and the bars are the CI of that run
    one = m[m.train_seed == 0]
    fig1 = figures.fig_minority_vs_depth(one, confident_share_min=0.0)
    left1 = fig1.get_axes()[0]
    labels = [t.get_text() for t in left1.get_legend().get_texts()]
    assert not any(lab.startswith("hollow") for lab in labels)
    assert not any("individual seeds" in lab for lab in labels)


def test_fig_minority_vs_depth_without_lpips_and_conf():
    m = make_metrics()
    m = m[m.metric.isin(["minority_share"]) & (m.sampler == "ddpm")]
    fig = figures.fig_minority_vs_depth(m)
    assert len(fig.get_axes()) == 2
    # configured fraction used as reference when training_minority_share is absent
    dashed = [ln for ln in fig.get_axes()[0].get_lines() if ln.get_linestyle() == "--"]
    assert sorted(ln.get_ydata()[0] for ln in dashed) == pytest.approx([10, 30])


# ---------------------------------------------------------------- Table 3
def test_fig_knn_vs_k(tmp_path):
    fig = figures.fig_knn_vs_k(make_metrics())
    axes = fig.get_axes()
    assert len(axes) == 2 * len(FRACTIONS)
    for ax in axes:
        assert len(ax.get_lines()) == len(DEPTHS)
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            "depth 2",
            "depth 2L",
            "depth 4",
            "each trained model (training seed)",
            f"band: 95% CI over {len(SEEDS)} training seeds (t)",
        ]
        assert "ddim, 50 steps" in ax.get_title()
    assert "dinov2" in axes[0].get_ylabel()
    _check_saves(fig, tmp_path)


def test_knn_table():
    m = make_metrics()
    t = figures.knn_table(m)
    assert list(t.columns) == [
        "minority_fraction",
        "depth",
        *[f"cos@k{k}" for k in KS],
        *[f"l2@k{k}" for k in KS],
        "n_replicates",
    ]
    assert len(t) == len(FRACTIONS) * len(DEPTHS)
    assert list(t["depth"][:3]) == ["2", "2L", "4"]
    assert (t["n_replicates"] == len(SEEDS)).all()
    row = t[(t.minority_fraction == 0.1) & (t.depth == "2L")].iloc[0]
    assert row["cos@k5"] == pytest.approx(0.8 + 0.02 * DEPTHS.index("2L") - 0.05)
    assert row["l2@k10"] == pytest.approx(5.0 - 0.3 * DEPTHS.index("2L") + 1.0)
    t2 = figures.knn_table(m, setting=("ddpm", 1000, 1.0))
    assert len(t2) == len(t)
    md = figures.markdown_table(t)
    assert md.count("\n") == len(t) + 2 and "cos@k1" in md


# ---------------------------------------------------------------- Fig. 5
@pytest.mark.parametrize("shape", [(12, 8, 8), (12, 1, 8, 8), (12, 3, 8, 8)])
def test_fig_same_seed_grid(tmp_path, shape):
    rng = np.random.default_rng(0)
    samples = {d: rng.integers(0, 256, size=shape, dtype=np.uint8) for d in DEPTHS}
    preds = {d: rng.integers(0, 2, size=shape[0]) for d in DEPTHS}
    fig = figures.fig_same_seed_grid(samples, preds, {0: "zero", 1: "one"}, n=5, title="t")
    axes = fig.get_axes()
    assert len(axes) == len(DEPTHS) * 5
    assert [axes[5 * r].get_ylabel() for r in range(3)] == ["depth 2", "depth 2L", "depth 4"]
    assert [ax.get_title() for ax in axes[:5]] == [f"seed {i}" for i in range(5)]
    assert all(ax.texts and ax.texts[0].get_text() in ("zero", "one") for ax in axes)
    _check_saves(fig, tmp_path)


def test_same_seed_columns_and_highlights():
    # sample 1: every depth agrees; samples 0, 3: the deeper models change the label
    preds = {
        "4": np.array([0, 1, 3, 2, 3, 3]),
        "2": np.array([3, 1, 3, 3, 0, 3]),
        "6": np.array([2, 1, 3, 0, 0, 3]),
    }
    assert figures.differing_columns(preds, range(6)) == [0, 3, 4]
    # Fig. A: seeds where the shallowest (depth 2) made the minority group 3, then the rest
    assert figures.minority_first_columns(preds, [3], 3) == [0, 2, 3]
    assert figures.minority_first_columns(preds, [3], 5) == [0, 2, 3, 5, 1]
    assert figures.minority_first_columns(preds, [7], 2) == [0, 1]
    rng = np.random.default_rng(0)
    samples = {d: rng.integers(0, 256, size=(6, 8, 8), dtype=np.uint8) for d in preds}
    names = {0: "f", 1: "fb", 2: "m", 3: "mb"}
    fig = figures.fig_same_seed_grid(samples, preds, names, columns=[0, 2, 3])
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes[:3]] == ["seed 0", "seed 2", "seed 3"]
    assert axes[0].get_ylabel() == "depth 2"
    assert [ax.texts[0].get_text() for ax in axes[:3]] == ["mb", "mb", "mb"]
    framed = [ax.spines["top"].get_visible() for ax in axes[:3]]
    assert framed == [True, False, True]
    with pytest.raises(ValueError, match="beyond"):
        figures.fig_same_seed_grid(samples, preds, names, columns=[6])


def test_fig_same_seed_grid_no_predictions_and_short():
    samples = {"2": np.zeros((3, 4, 4), np.uint8), "6": np.zeros((3, 4, 4), np.uint8)}
    fig = figures.fig_same_seed_grid(samples, None, None, n=10)
    assert len(fig.get_axes()) == 2 * 3
    assert all(not ax.texts for ax in fig.get_axes())


# ---------------------------------------------------------------- loss curves
def test_fig_loss_curves(tmp_path):
    fig = figures.fig_loss_curves(make_log())
    axes = fig.get_axes()
    assert len(axes) == len(FRACTIONS)
    for ax in axes:
        assert ax.get_yscale() == "log"
        # raw faint line per run + one smoothed line per depth
        assert len(ax.get_lines()) == len(DEPTHS) * len(SEEDS) + len(DEPTHS)
        assert len(ax.get_legend().get_texts()) == len(DEPTHS)
    _check_saves(fig, tmp_path)


# ---------------------------------------------------------------- toy (Fig. 3)
def test_random_class_map_exact_share():
    rng = np.random.default_rng(1)
    for size, share in [(64, 0.5), (64, 0.9), (8, 0.7), (5, 0.33), (4, 0.0), (4, 1.0)]:
        m = toy.random_class_map(size, share, rng)
        assert m.dtype == bool and m.shape == (size, size)
        assert m.sum() == round(share * size * size)
    # positions are random
    a, b = (toy.random_class_map(16, 0.5, np.random.default_rng(s)) for s in (0, 1))
    assert not np.array_equal(a, b)


def test_majority_pool_deterministic_cases():
    rng = np.random.default_rng(0)
    assert toy.majority_pool(np.ones((2, 2), bool), rng).tolist() == [[True]]
    assert toy.majority_pool(np.zeros((2, 2), bool), rng).tolist() == [[False]]
    assert toy.majority_pool(np.array([[1, 1], [1, 0]], bool), rng).tolist() == [[True]]
    assert toy.majority_pool(np.array([[0, 0], [1, 0]], bool), rng).tolist() == [[False]]
    m = np.array([[1, 1, 0, 0], [1, 0, 0, 1], [0, 1, 1, 1], [0, 0, 1, 1]], bool)
    assert toy.majority_pool(m, rng).tolist() == [[True, False], [False, True]]
    with pytest.raises(ValueError):
        toy.majority_pool(np.ones((3, 4), bool), rng)


def test_majority_pool_ties_are_fair():
    tie = np.array([[1, 0], [0, 1]], bool)
    wins = sum(bool(toy.majority_pool(tie, np.random.default_rng(s))[0, 0]) for s in range(2000))
    assert 0.45 < wins / 2000 < 0.55
    # many ties in one map: roughly half of them go each way
    big = np.tile(tie, (32, 32))
    assert 0.45 < toy.majority_pool(big, np.random.default_rng(0)).mean() < 0.55


def test_abstraction_curve():
    res = toy.abstraction_curve(size=32, shares=(0.5, 0.7, 0.9), n_maps=40, seed=0)
    assert {"initial_share", "level", "map_index", "majority_share"} <= set(res.columns)
    assert sorted(res["level"].unique()) == list(range(6))  # 32 -> 1
    assert res.groupby("level")["map_size"].first().tolist() == [32, 16, 8, 4, 2, 1]
    level0 = res[res.level == 0]
    for s in (0.5, 0.7, 0.9):
        assert np.allclose(
            level0[level0.initial_share == s]["majority_share"], round(s * 32 * 32) / (32 * 32)
        )
    last = res[res.level == 5]["majority_share"]
    assert set(last.unique()) <= {0.0, 1.0}
    mean = res.groupby(["initial_share", "level"])["majority_share"].mean()
    curve = mean.loc[0.9].to_numpy()
    assert np.all(np.diff(curve) >= 0)  # non-decreasing, strictly until it saturates at 1
    assert np.all(np.diff(curve[:3]) > 0)
    assert curve[-1] == 1.0
    assert np.all(np.diff(mean.loc[0.7].to_numpy()[:4]) > 0)
    assert abs(mean.loc[0.5].loc[3] - 0.5) < 0.05
    # reproducible
    pd.testing.assert_frame_equal(res, toy.abstraction_curve(32, (0.5, 0.7, 0.9), n_maps=40))
    assert len(toy.abstraction_curve(16, (0.6,), levels=2, n_maps=3)["level"].unique()) == 3


def test_fig_toy(tmp_path):
    res = toy.abstraction_curve(size=16, shares=(0.5, 0.7, 0.9), n_maps=10)
    fig = figures.fig_toy(res)
    axes = fig.get_axes()
    assert len(axes) == 1 + 5  # curve + levels 0..4 (16 -> 1)
    assert len(axes[0].get_lines()) == 3
    ex = toy.example_pyramid(16, 0.8, seed=3)
    assert [m.shape[0] for m in ex] == [16, 8, 4, 2, 1]
    assert len(figures.fig_toy(res, ex[:3]).get_axes()) == 4
    _check_saves(fig, tmp_path)


def test_hollow_markers_follow_their_own_key_not_the_per_sample_cutoff():
    """``figures.confident_share_min`` (Fig. 4's hollow-marker share) is its own config key,
    passed by the rule; ``metrics.confidence_threshold`` is the per-sample cut-off only."""
    import inspect

    text = (WORKFLOW / "rules" / "figures.smk").read_text()
    assert 'figure_options(_fig.name, config["figures"])' in text
    assert figure_options("fig4_minority_vs_depth", {"confident_share_min": 0.4}) == {
        "confident_share_min": 0.4
    }
    params = inspect.signature(figures.fig_minority_vs_depth).parameters
    assert "confident_share_min" in params and "confidence_threshold" not in params


def test_difflens_figures_from_a_synthetic_sweep():
    base = make_metrics()
    base = base[base.metric.isin(["minority_share", "training_minority_share", "amplification"])]
    fd = base[base.metric == "minority_share"].assign(metric="fd", value=0.5)
    fid = base[base.metric == "minority_share"].assign(metric="fid_classifier", value=30.0)
    plain = pd.concat([base, fd, fid])
    on = plain.assign(intervene=16.0, intervene_mode="probability")
    on.loc[on.metric == "fd", "value"] = 0.1
    on.loc[on.metric == "fid_classifier", "value"] = 45.0
    table = pd.concat([plain, on], ignore_index=True)
    fig = draw_function("fig_fd_vs_intervention")(table)
    lines = [
        ln for ax in fig.get_axes() for ln in ax.get_lines() if ln.get_label().startswith("depth")
    ]
    assert lines and all(list(ln.get_xdata()) == [1.0, 16.0] for ln in lines)
    fd_panel = fig.get_axes()[0]
    assert any(np.allclose(ln.get_ydata(), [0.5, 0.1]) for ln in fd_panel.get_lines())
    front = draw_function("fig_bias_quality_frontier")(table)
    assert front.get_axes() and "fid_classifier" in front.get_axes()[0].get_xlabel()
    # the depth figures ignore the intervened cells
    ref = draw_function("fig4_minority_vs_depth")(plain)
    got = draw_function("fig4_minority_vs_depth")(table)
    assert len(got.get_axes()) == len(ref.get_axes())


# ---------------------------------------------------------------- bands: what the intervals are
GOLDEN = Path(__file__).resolve().parent / "golden"


def _model_points(ax) -> np.ndarray:
    """(x, y) of every faint per-model point drawn on ``ax`` (``common.draw_models``)."""
    points = [c.get_offsets() for c in ax.collections if c.get_gid() == "models"]
    return np.vstack(points) if points else np.empty((0, 2))


def _legend_texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def _bars(ax) -> list[np.ndarray]:
    """Per errorbar of ``ax``: rows (x, low, high) of its bars."""
    out = []
    for cont in ax.containers:
        if isinstance(cont, ErrorbarContainer) and cont.lines[2]:
            segs = cont.lines[2][0].get_segments()
            out.append(np.array([[s[0][0], s[0][1], s[1][1]] for s in segs]))
    return out


def _with_confident(m: pd.DataFrame) -> pd.DataFrame:
    """``m`` with the robust readout ``minority_share_confident`` of every cell (0.8 times the
    plain share, its interval likewise)."""
    share = m[m.metric == "minority_share"]
    conf = share.assign(
        metric="minority_share_confident",
        value=0.8 * share["value"],
        ci_low=0.8 * share["ci_low"],
        ci_high=0.8 * share["ci_high"],
    )
    return pd.concat([m, conf], ignore_index=True)


def test_fig4_bars_are_the_t_interval_over_training_seeds():
    m = make_metrics()
    third = m[m.train_seed == 0].assign(train_seed=2)
    third["value"] = 1.3 * third["value"]
    m = _with_confident(pd.concat([m, third], ignore_index=True))
    fig = figures.fig_minority_vs_depth(m, confident_share_min=0.0)
    left = fig.get_axes()[0]  # ddim, the first setting sorted
    assert left.get_ylabel() == "% minority among recognised samples"
    texts = _legend_texts(left.get_legend())
    assert "bars: 95% CI over 3 training seeds (t)" in texts
    assert "each trained model (training seed)" in texts
    rows = m[(m.metric == "minority_share_confident") & (m.sampler == "ddim")]
    bars = _bars(left)[0]  # the 10% line
    for (_x, low, high), depth in zip(bars, ["2", "2L", "4"], strict=True):
        cell = rows[(rows.minority_fraction == 0.1) & (rows.depth == depth)]
        vals = 100 * cell["value"]
        assert len(vals) == 3
        # the t-interval over models, its standard error at least the models' own sampling
        # error (stats.sampling_floor)
        se_i = 100 * (cell["ci_high"] - cell["ci_low"]) / (2 * scipy_stats.norm.ppf(0.975))
        se = max(scipy_stats.sem(vals), np.sqrt((se_i**2).sum()) / 3)
        lo, hi = scipy_stats.t.interval(0.95, 2, loc=vals.mean(), scale=se)
        assert (low, high) == pytest.approx((max(lo, 0.0), hi))
    # every model a faint point: 2 fractions x 3 depths x 3 training seeds
    points = _model_points(left)
    assert len(points) == 18
    assert sorted(points[:, 1]) == pytest.approx(sorted(100 * rows["value"]))


def test_fig4_one_training_seed_bars_are_the_sampling_interval():
    m = _with_confident(make_metrics())
    fig = figures.fig_minority_vs_depth(m[m.train_seed == 0], confident_share_min=0.0)
    left = fig.get_axes()[0]
    texts = _legend_texts(left.get_legend())
    assert any(t.startswith("bars: sampling 95% CI, 1 training seed") for t in texts)
    assert not any("over" in t and "training seeds" in t for t in texts)
    assert "each trained model (training seed)" not in texts
    rows = m[(m.metric == "minority_share_confident") & (m.sampler == "ddim") & (m.train_seed == 0)]
    rows = rows[rows.minority_fraction == 0.1].set_index("depth").loc[["2", "2L", "4"]]
    np.testing.assert_allclose(_bars(left)[0][:, 1], 100 * rows["ci_low"])
    np.testing.assert_allclose(_bars(left)[0][:, 2], 100 * rows["ci_high"])
    assert len(_model_points(left)) == len(FRACTIONS) * len(DEPTHS)


def test_fd_figure_shows_each_seed_not_just_their_mean():
    """DiffLens FD of two training seeds 0.016 and 0.242: both dots, their mean, the band
    over the two (t, cut at 0)."""
    base = make_metrics()
    base = base[
        (base.sampler == "ddim")
        & (base.depth == "2")
        & (base.minority_fraction == 0.1)
        & base.metric.isin(["minority_share", "training_minority_share", "amplification"])
    ]
    fd = base[base.metric == "minority_share"].assign(metric="fd", value=0.55)
    plain = pd.concat([base, fd], ignore_index=True)
    on = plain.assign(intervene=64.0, intervene_mode="probability")
    on.loc[on.metric == "fd", "value"] = np.where(
        on.loc[on.metric == "fd", "train_seed"], 0.242, 0.016
    )
    fig = figures.fig_fd_vs_intervention(pd.concat([plain, on], ignore_index=True))
    ax = fig.get_axes()[0]
    points = _model_points(ax)
    assert sorted(points[points[:, 0] == 64.0, 1]) == pytest.approx([0.016, 0.242])
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("depth")]
    assert line.get_ydata()[-1] == pytest.approx(0.129)
    assert "band: 95% CI over 2 training seeds (t)" in _legend_texts(fig.legends[0])
    _, hi = scipy_stats.t.interval(0.95, 1, loc=0.129, scale=scipy_stats.sem([0.016, 0.242]))
    band = np.vstack(
        [p.vertices for c in ax.collections for p in c.get_paths() if c.get_gid() != "models"]
    )
    assert band[:, 1].max() == pytest.approx(hi) and band[:, 1].min() == pytest.approx(0.0)


def _conditional_two_seeds(confident: bool = True) -> pd.DataFrame:
    """The golden conditional table, a second training seed (rho 0.03 lower) and, with
    ``confident``, rho_model_confident rows (0.01 above rho_model)."""
    m = pd.read_parquet(GOLDEN / "conditional_metrics.parquet")
    m = m[m.metric != "rho_model_confident"]  # the golden's own, replaced below
    if confident:
        rho = m[m.metric == "rho_model"]
        m = pd.concat([m, rho.assign(metric="rho_model_confident", value=rho["value"] + 0.01)])
    other = m.assign(train_seed=1)
    shifted = other.metric.str.startswith("rho_model")
    other.loc[shifted, "value"] = other.loc[shifted, "value"] - 0.03
    return pd.concat([m, other], ignore_index=True)


def test_sampler_figures_read_the_robust_rho_and_name_the_band():
    m = _conditional_two_seeds()
    fig = figures.fig_rho_vs_steps(m)
    ax = fig.get_axes()[0]
    assert ax.get_ylabel() == "rho_model among recognised samples"
    assert "band: 95% CI over 2 training seeds (t)" in _legend_texts(fig.legends[0])
    assert ax.get_legend() is None  # the legend is below the panels, not over the lines
    # log steps axis: ticks at the steps run, written plainly, no minor labels
    assert [t.get_text() for t in ax.get_xticklabels()] == ["3", "6"]
    assert isinstance(ax.xaxis.get_minor_formatter(), matplotlib.ticker.NullFormatter)
    assert len(_model_points(ax)) > 0
    fig = figures.fig_rho_vs_rho_data(m)
    assert fig.legends and all(ax.get_legend() is None for ax in fig.get_axes())
    old = figures.fig_rho_vs_steps(_conditional_two_seeds(confident=False))
    assert old.get_axes()[0].get_ylabel().startswith("rho_model, all samples")


def test_conditional_titles_say_rho_data():
    fig = figures.fig_bias_quality_frontier(pd.read_parquet(GOLDEN / "conditional_metrics.parquet"))
    titles = [ax.get_title() for ax in fig.get_axes() if ax.get_visible()]
    assert any("biased_mnist | rho_data 0.8" == t for t in titles)
    assert not any("minority fraction" in t for t in titles)


def test_difflens_probes_label_the_noise_level_of_each_objective():
    """An EDM model's recorded timestep input is 250 ln(sigma), not a DDPM timestep."""
    sigmas = np.array([157.0, 10.0, 1.0, 0.34])
    rows = []
    for objective, ts in (("edm", 250 * np.log(sigmas)), ("epsilon", [999.0, 700.0, 300.0, 19.0])):
        for seed in (0, 1):
            for call, t in enumerate(ts):
                rows.append(
                    {
                        "call": call,
                        "t": t,
                        "probe_accuracy": 0.6 + 0.1 * call + 0.02 * seed,
                        "n_test": 128,
                        "capture_share_0": 0.9,
                        "capture_share_1": 0.1,
                        "dataset": "mnist69",
                        "minority_fraction": 0.1,
                        "depth": "2",
                        "train_seed": seed,
                        "objective": objective,
                    }
                )
    fig = figures.fig_difflens_probes(pd.DataFrame(rows))
    edm, eps = fig.get_axes()
    assert edm.get_xscale() == "log" and "σ" in edm.get_xlabel()
    assert "DDPM timestep" not in edm.get_xlabel() and "DDPM timestep" in eps.get_xlabel()
    (line,) = [ln for ln in edm.get_lines() if ln.get_label() == "depth 2"]
    assert sorted(line.get_xdata()) == pytest.approx(sorted(sigmas), rel=1e-6)
    assert "band: 95% CI over 2 training seeds (t)" in _legend_texts(edm.get_legend())
