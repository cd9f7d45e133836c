"""The conditional family on coloured MNIST in the pipeline: datasets, decorrelated classifier
data, the per-cell evaluation (rho_model, label adherence) and the sampler-study figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from biaslab.base.columns import GRID_COLUMNS
from biaslab.datasets import build_base, build_train, class_indices, rho_of
from biaslab.datasets.colour_mnist import attributes_of
from biaslab.evaluation.cell import evaluate_cell, summary_table
from biaslab.evaluation.classifier import ClassifierConfig, save_classifier, train_classifier
from biaslab.figures import (
    cell_table,
    fig_bias_diversity_frontier,
    fig_bypass,
    fig_rho_vs_guidance,
    fig_rho_vs_rho_data,
    fig_rho_vs_steps,
    pareto_front,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = [0, 1, 2]


def settings(dataset="biased_mnist", **kw):
    s = {
        "dataset": dataset,
        "source": "embedded",
        "root": None,
        "download": False,
        "resolution": 16,
        "heldout_fraction": 0.2,
        "split_seed": 0,
        "classes": CLASSES,
        "rho_right": 0.6,
        "n_train": None,
    }
    return {**s, **kw}


@pytest.fixture(scope="module")
def base():
    return build_base(settings())[0]


def aligned_share(images, y, dataset="biased_mnist", key="colour"):
    return float(np.mean(attributes_of(images, dataset, CLASSES)[key] == y))


def test_base_is_colour_decorrelated(base):
    assert base["x_in"].shape[1:] == (3, 16, 16) and base["digits_in"].shape[1:] == (16, 16)
    assert set(base["y_in"]) == set(CLASSES) and list(base["classes"]) == CLASSES
    assert len(base["y_in"]) == 3 * 400 and len(base["y_out"]) == 3 * 100
    for x, y in ((base["x_in"], base["y_in"]), (base["x_out"], base["y_out"])):
        # every colour equally likely for every digit: own colour in 1/3 of each class
        assert aligned_share(x, y) == pytest.approx(1 / 3, abs=0.01)
        colours = attributes_of(x, "biased_mnist", CLASSES)["colour"]
        for c in CLASSES:
            counts = np.bincount(colours[y == c], minlength=3)[CLASSES]
            assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("rho", [0.5, 0.9, 0.99])
def test_train_set_alignment_is_rho(base, rho):
    fraction = 1 - rho
    train, manifest = build_train(base, settings(), fraction)
    assert rho_of(fraction) == rho
    assert train["x"].shape == (1200, 3, 16, 16)
    want = np.mean([round(rho * 400) / 400 for _ in CLASSES])
    assert aligned_share(train["x"], train["y"]) == pytest.approx(want)
    assert float(np.mean(train["colour"] == train["y"])) == pytest.approx(want)
    own = manifest[manifest["aligned"]]
    assert (own["count"] == round(rho * 400)).all() and (manifest["rho_data"] == rho).all()


def test_same_digits_at_every_rho_and_balanced_subset(base):
    a, _ = build_train(base, settings(n_train=90), 0.1)
    b, _ = build_train(base, settings(n_train=90), 0.3)
    assert np.bincount(a["y"])[CLASSES].tolist() == [30, 30, 30]
    assert np.array_equal(a["y"], b["y"])
    # the digit strokes (white pixels) are the same images, only backgrounds differ
    assert np.array_equal(a["x"].min(axis=1) == 255, b["x"].min(axis=1) == 255)
    with pytest.raises(ValueError, match=r"conditional\.n_train"):
        build_train(base, settings(n_train=3000), 0.1)


def test_multicolour_halves_follow_their_own_rho():
    s = settings("multicolour_mnist")
    base, _ = build_base(s)
    assert aligned_share(base["x_in"], base["y_in"], s["dataset"], "colour_right") == (
        pytest.approx(1 / 3, abs=0.01)
    )
    train, _ = build_train(base, s, 0.05)
    left = aligned_share(train["x"], train["y"], s["dataset"], "colour_left")
    right = aligned_share(train["x"], train["y"], s["dataset"], "colour_right")
    assert left == pytest.approx(0.95, abs=0.002) and right == pytest.approx(0.6, abs=0.002)


def test_class_indices():
    assert class_indices(np.array([2, 0, 2]), np.array([0, 2])).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="not among the classes"):
        class_indices(np.array([5]), np.array([0, 2]))


GRID = {
    "dataset": "biased_mnist",
    "source": "embedded",
    "resolution": 16,
    "minority_fraction": 0.1,
    "rho_data": 0.9,
    "depth": "2",
    "width": 1.0,
    "train_seed": 0,
    "train_steps": 10,
    "num_classes": 3,
    "sampler": "ddim",
    "steps": 5,
    "eta": 0.0,
    "s_churn": 0.0,
    "guidance": 1.0,
    "bypass": 0.0,
    "bypass_schedule": "constant",
    "n_samples": 120,
    "sample_seed": 0,
}


@pytest.fixture(scope="module")
def colour_cell(base, tmp_path_factory):
    """The real training images as "samples" of a perfect model, and a decorrelated classifier."""
    model, _ = train_classifier(base, ClassifierConfig(epochs=3, min_accuracy=0.9))
    path = tmp_path_factory.mktemp("clf") / "clf.pt"
    save_classifier(model, base["classes"], path)
    train, _ = build_train(base, settings(), 0.1)
    pick = np.random.default_rng(0).choice(len(train["y"]), 120, replace=False)
    samples = {
        "images": train["x"][pick],
        "seeds": np.arange(120),
        "labels": class_indices(train["y"][pick], train["classes"]),
    }
    return {"samples": samples, "train": train, "classifier_path": str(path), "grid": GRID}


def test_rho_model_of_training_images_is_their_alignment(colour_cell):
    pred, m = evaluate_cell(**colour_cell)
    value = dict(zip(m.loc[m.k.isna(), "metric"], m.loc[m.k.isna(), "value"], strict=True))
    samples = colour_cell["samples"]
    true = float(np.mean(pred["label"] == pred["colour"]))
    own = np.mean(colour_cell["train"]["colour"][:] == colour_cell["train"]["y"])
    assert value["rho_model"] == pytest.approx(true)
    assert value["training_rho"] == pytest.approx(own)
    assert value["minority_share"] == pytest.approx(1 - value["rho_model"])
    assert value["amplification"] == pytest.approx(value["rho_model"] - value["training_rho"])
    # the labeller is exact on real images: rho_model is the alignment of the picked images
    assert true == pytest.approx(aligned_share(samples["images"], pred["label"].to_numpy()))
    assert value["label_adherence"] >= 0.9
    row = m[m.metric == "rho_model"].iloc[0]
    assert row.ci_low <= row.value <= row.ci_high and row.n == 120
    assert set(GRID_COLUMNS) <= set(m.columns) and set(GRID_COLUMNS) <= set(pred.columns)
    assert (m["guidance"] == 1.0).all() and (pred["rho_data"] == 0.9).all()
    table = summary_table(m)
    assert (
        "rho_model, recognised [95% CI]" in table
        and "unrecognised %" in table
        and "label adherence %" in table
    )


def test_wrong_labels_lower_rho_model_and_adherence(colour_cell):
    cell = dict(colour_cell)
    s = dict(cell["samples"])
    s["labels"] = (s["labels"] + 1) % 3  # conditioned on the wrong digit
    cell["samples"] = s
    _, m = evaluate_cell(**cell)
    value = dict(zip(m.loc[m.k.isna(), "metric"], m.loc[m.k.isna(), "value"], strict=True))
    assert value["rho_model"] < 0.2 and value["label_adherence"] < 0.1


def test_unlabelled_samples_rejected(colour_cell):
    cell = dict(colour_cell)
    cell["samples"] = {k: v for k, v in cell["samples"].items() if k != "labels"}
    with pytest.raises(ValueError, match="conditioning labels"):
        evaluate_cell(**cell)


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def synthetic_metrics() -> pd.DataFrame:
    """Cells of a conditional family (steps x eta x w) and a depth family (bypass sweep)."""
    rows = []
    rng = np.random.default_rng(0)

    def cell(grid, values):
        for metric, (v, lo, hi) in values.items():
            rows.append({**grid, "metric": metric, "value": v, "ci_low": lo, "ci_high": hi})

    for rho in (0.8, 0.95):
        for steps, eta, w in [
            (10, 0, 1),
            (10, 1, 1),
            (40, 0, 1),
            (40, 1, 1),
            (20, 0, 0),
            (20, 0, 0.3),
            (20, 0, 1),
            (20, 0, 3),
        ]:
            r = min(0.99, rho + 0.05 * w - 0.1 * eta + rng.normal(0, 0.01))
            g = {
                **GRID,
                "minority_fraction": round(1 - rho, 10),
                "rho_data": rho,
                "steps": steps,
                "eta": float(eta),
                "guidance": float(w),
            }
            cell(
                g,
                {
                    "rho_model": (r, r - 0.05, r + 0.04),
                    "label_adherence": (0.9, 0.85, 0.95),
                    "training_rho": (rho, np.nan, np.nan),
                    "minority_share": (1 - r, 1 - r - 0.04, 1 - r + 0.05),
                    "training_minority_share": (1 - rho, np.nan, np.nan),
                    "amplification": (r - rho, np.nan, np.nan),
                    "diversity_lpips": (0.3 - 0.02 * w, np.nan, np.nan),
                },
            )
    for depth in ("2", "3"):
        for p in (0.0, 0.5, 1.0):
            g = {
                **GRID,
                "dataset": "mnist69",
                "minority_fraction": 0.1,
                "depth": depth,
                "bypass": p,
                "guidance": 0.0,
                "rho_data": np.nan,
                "num_classes": np.nan,
            }
            s = 0.05 + 0.03 * p
            cell(
                g,
                {
                    "minority_share": (s, s - 0.02, s + 0.02),
                    "training_minority_share": (0.1, np.nan, np.nan),
                    "amplification": (0.1 - s, np.nan, np.nan),
                    "diversity_lpips": (0.2 + 0.05 * p, np.nan, np.nan),
                },
            )
    m = pd.DataFrame(rows)
    m["k"] = pd.array([pd.NA] * len(m), dtype="Int64")
    m["backbone"] = np.where(m["metric"] == "diversity_lpips", "classifier", None)
    return m


def test_cell_table_one_row_per_cell():
    cells = cell_table(synthetic_metrics())
    assert len(cells) == 2 * 8 + 2 * 3
    c = cells[(cells.dataset == "biased_mnist") & (cells.eta == 1.0)]
    assert c["stochastic"].all() and (c["rho_model_lo"] < c["rho_model"]).all()


def test_sampler_figures_draw_their_lines():
    m = synthetic_metrics()
    fig = fig_rho_vs_rho_data(m)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    # {few, many} steps x {det, stoch} at w = 1, and the identity line
    assert len(labels) == 5 and "rho_model = rho_data" in labels
    assert any("η=1" in lab and "40 steps" in lab for lab in labels)
    plt.close(fig)
    fig = fig_rho_vs_steps(m)
    assert len(fig.axes) == 2  # one panel per rho_data
    plt.close(fig)
    fig = fig_rho_vs_guidance(m)
    top = fig.axes[0]
    assert top.get_xscale() == "symlog"
    xs = sorted(set(np.concatenate([line.get_xdata() for line in top.get_lines()[::2]])))
    assert xs == [0.0, 0.3, 1.0, 3.0]
    plt.close(fig)
    fig = fig_bypass(m)
    ys = fig.axes[0].get_lines()[0].get_ydata()
    assert np.allclose(ys, [5.0, 6.5, 8.0])  # % minority at p = 0, 0.5, 1
    plt.close(fig)
    fig = fig_bias_diversity_frontier(m)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3  # biased_mnist x 2 rho, mnist69 x 1 fraction
    plt.close(fig)


def test_bypass_figure_without_sweep_says_so():
    m = synthetic_metrics()
    fig = fig_bypass(m[m["bypass"] == 0])
    assert "no mid-block bypass sweep" in fig.axes[0].texts[0].get_text()
    plt.close(fig)


def test_pareto_front():
    bias = np.array([5.0, 3.0, 4.0, 1.0, 2.0, np.nan])
    div = np.array([0.5, 0.4, 0.3, 0.1, 0.1, 0.9])
    # 2 is beaten by 1 (less biased, more diverse); 4 by 3 (same diversity, less bias)
    assert pareto_front(bias, div).tolist() == [3, 1, 0]


def test_unlearned_models_are_drawn_hollow():
    """Cells of models the probe says did not learn the attribute get white-filled markers
    and a note in the title; learned ones do not."""
    from matplotlib.collections import PathCollection

    def hollow_points(fig) -> int:
        n = 0
        for ax in fig.axes:
            for c in ax.collections:
                if isinstance(c, PathCollection) and len(c.get_facecolors()):
                    n += int((c.get_facecolors()[:, :3] == 1).all(axis=1).sum())
        return n

    m = synthetic_metrics()
    learned = m.assign(probe_learned=True)
    unlearned = m.assign(probe_learned=m["minority_fraction"].round(2) != 0.05)
    for draw in (fig_rho_vs_steps, fig_rho_vs_rho_data, fig_rho_vs_guidance):
        fig = draw(learned)
        assert hollow_points(fig) == 0 and "hollow" not in fig._suptitle.get_text()
        plt.close(fig)
        fig = draw(unlearned)
        assert hollow_points(fig) > 0 and "probe" in fig._suptitle.get_text()
        plt.close(fig)
