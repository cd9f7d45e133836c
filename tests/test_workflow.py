"""End-to-end: the whole DAG on the tiny config, crash-resume of the workflow, paper dry run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biaslab.base.columns import GRID_COLUMNS
from tests.helpers import (
    ROOT,
    TINY,
    TINY_CONDITIONAL,
    assert_matches_golden,
    job_counts,
    model_jobs,
    planned_cells,
    snakemake,
    snakemake_popen,
    write_idx_fixture,
)

FIGURES = [
    "fig4_minority_vs_depth",
    "fig_knn_vs_k",
    "fig_loss_curves",
    "fig3_toy",
    "fig5_same_seed/minority~0.2_seed~0",
    "figA_minority_seeds/minority~0.2_seed~0",
    "fig_knob_effects",
]

pytestmark = pytest.mark.slow


def test_tiny_run_writes_tidy_metrics(tiny_run):
    m = pd.read_parquet(tiny_run / "results" / "metrics.parquet")
    assert set(GRID_COLUMNS) <= set(m.columns)
    assert set(m["depth"]) == {"2", "3"}
    assert set(m["sampler"]) == {"ddim", "ddpm"}
    assert set(m["minority_fraction"]) == {0.2}
    expected = {
        "minority_share",
        "confident_share",
        "training_minority_share",
        "amplification",
        "diversity_lpips",
        "knn_cosine",
        "knn_l2",
    }
    assert expected <= set(m["metric"])
    share = m[m.metric == "minority_share"]
    assert len(share) == 5  # 2 depths x 2 sampler cells, and the depth-2 model's SAE cell
    assert ((share.value >= share.ci_low) & (share.value <= share.ci_high)).all()
    assert set(m.loc[m.metric == "knn_l2", "k"].astype(int)) == {1, 2, 5, 10}
    train_share = m.loc[m.metric == "training_minority_share", "value"]
    assert (train_share.round(3) == 0.2).all()
    p = pd.read_parquet(tiny_run / "results" / "predictions.parquet")
    assert len(p) == 5 * 12 and set(GRID_COLUMNS) <= set(p.columns)
    log = pd.read_parquet(tiny_run / "results" / "train_log.parquet")
    assert log.groupby("depth")["step"].max().tolist() == [200, 200]


def test_tiny_run_difflens_slice(tiny_run):
    """The depth-2 model gets an SAE, located features and an intervened cell; the depth-3
    model only the plain rows. Every cell has FD, fid_classifier and kid_classifier (no
    standard fid: no FID Inception weights); the intervened cell also the
    same-seed similarity to its unintervened twin."""
    res = tiny_run / "results"
    m = pd.read_parquet(res / "metrics.parquet")
    on = m[m["intervene"] != 1.0]
    assert set(on["depth"]) == {"2"} and set(on["intervene_mode"]) == {"probability"}
    assert {"fd", "fd_training", "fid_classifier", "kid_classifier"} <= set(m["metric"])
    assert not {"fid", "kid", "kid_std"} & set(m["metric"])
    cells = m.groupby(["depth", "sampler", "intervene"])["metric"].agg(set)
    assert all({"fd", "fid_classifier"} <= s for s in cells)
    sim = m[m.metric == "same_seed_similarity"]
    assert len(sim) == 1 and sim["intervene"].iloc[0] == 4.0 and 0 < sim["value"].iloc[0] <= 1
    probes = pd.read_parquet(res / "difflens" / "probes.parquet")
    assert len(probes) == 3 and set(probes["depth"]) == {"2"}  # keep_calls 3
    assert probes["probe_accuracy"].between(0, 1).all()
    features = pd.read_parquet(res / "difflens" / "features.parquet")
    assert set(features["class_index"]) == {0, 1} and len(features) == 2 * 5
    sae = pd.read_parquet(res / "difflens" / "sae.parquet")
    assert (sae["final_fvu"] < 1).all() and set(GRID_COLUMNS) & set(sae.columns)
    gallery = "fig_difflens_gallery/mnist69/minority~0.2_depth~2_seed~0"
    for fig in ("fig_fd_vs_intervention", "fig_difflens_probes", gallery):
        assert (res / "figures" / f"{fig}.png").stat().st_size > 1000


def test_tiny_run_writes_aggregate_contrasts_and_claims(tiny_run):
    res = tiny_run / "results"
    agg = pd.read_parquet(res / "aggregate.parquet")
    assert "train_seed" not in agg.columns and (agg["n_models"] == 1).all()
    assert agg["band"].str.startswith("sampling 95% CI, 1 training seed").any()
    con = pd.read_parquet(res / "contrasts.parquet")
    assert {"depth", "intervene"} <= set(con["vary"])
    assert {"model", "across"} == set(con["level"])
    assert {"effect", "ci_low", "ci_high", "p", "n_models", "k_same_sign"} <= set(con.columns)
    claims = pd.read_parquet(res / "claims.parquet")
    assert set(claims["claim"]) == {"deeper", "sae-balances"}
    assert set(claims["verdict"]) <= {"held", "reversed", "inconclusive"}
    assert len(claims[claims["claim"] == "deeper"]) == 1  # where: ddim, no intervention
    md = (res / "tables" / "claims.md").read_text()
    assert "sae-balances" in md and "sampling 95% CI, 1 training seed" in md


def test_tiny_run_matches_golden_tables(tiny_run):
    assert_matches_golden(tiny_run / "results", "tiny")


def test_tiny_run_writes_figures_models_and_report(tiny_run):
    for fig in FIGURES:
        for ext in ("png", "pdf"):
            path = tiny_run / "results" / "figures" / f"{fig}.{ext}"
            assert path.stat().st_size > 1000, path
    model = tiny_run / "results/models/mnist69/minority~0.2/depth~3/seed~0/model"
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(model / "unet")
    assert len(unet.config.down_block_types) == 3
    assert (model / "train_config.yaml").exists()
    assert not list((tiny_run / "results").rglob("*.tmp*"))
    snakemake(
        "--report",
        "results/report.html",
        "--configfile",
        str(TINY),
        cwd=tiny_run,
        timeout=300,
        check=True,
    )
    assert (tiny_run / "results" / "report.html").stat().st_size > 10_000


KNOBS = ["sampler", "steps", "eta", "s_churn", "guidance", "bypass", "bypass_schedule"]


def test_tiny_conditional_run_matches_golden_tables(tiny_conditional_run):
    assert_matches_golden(tiny_conditional_run / "results", "conditional")


def test_sampler_family_metrics_carry_every_knob(tiny_conditional_run):
    import yaml

    cfg = yaml.safe_load(TINY_CONDITIONAL.read_text())
    m = pd.read_parquet(tiny_conditional_run / "results" / "metrics.parquet")
    assert set(GRID_COLUMNS) <= set(m.columns)
    cells = m[m.metric == "minority_share"]
    colour = cells[cells.dataset != "mnist69"]
    # 2 datasets x 2 rho x 5 settings, each with the knob values of its grid row, and the
    # intervened cell of the biased_mnist rho 0.8 model (DiffLens)
    assert len(colour) == 21
    on = colour[colour.intervene != 1.0]
    assert len(on) == 1 and on.iloc[0][["dataset", "rho_data"]].tolist() == ["biased_mnist", 0.8]
    got = {tuple(r) for r in colour[KNOBS].drop_duplicates().itertuples(index=False)}
    want = {
        (
            r["sampler"],
            r["steps"],
            r.get("eta", 0.0),
            r.get("s_churn", 0.0),
            r["guidance"],
            0.0,
            "constant",
        )
        for r in cfg["conditional"]["grid"]
    }
    assert got == want
    assert set(colour["rho_data"]) == {0.8, 0.95} and (colour["num_classes"] == 3).all()
    depth = cells[cells.dataset == "mnist69"]
    assert sorted(depth["bypass"]) == [0.0, 0.5, 1.0] and depth["rho_data"].isna().all()
    assert set(depth["bypass_schedule"]) == {"constant", "linear"}
    assert (m.loc[m.sampler == "heun", "s_churn"] == 10.0).all()
    rho = m[m.metric == "rho_model"]
    assert len(rho) == 21 and ((rho.value >= rho.ci_low) & (rho.value <= rho.ci_high)).all()
    assert len(m[m.metric == "rho_model_right"]) == 10  # multicolour only
    assert len(m[m.metric == "label_adherence"]) == 21
    train_rho = m[m.metric == "training_rho"].groupby("rho_data")["value"].first()
    assert train_rho.round(2).to_dict() == {0.8: 0.8, 0.95: 0.93}  # round(0.95 * 30) / 30
    p = pd.read_parquet(tiny_conditional_run / "results" / "predictions.parquet")
    cp = p[p.dataset != "mnist69"]
    # conditioning labels cycle through the classes: 4 samples per digit in each cell
    cells = cp.groupby(["dataset", "rho_data", *KNOBS, "intervene"])
    assert (cells["label"].value_counts() == 4).all()


def test_conditional_difflens_slice(tiny_conditional_run):
    """DiffLens on a class-conditional model: the captured images are labelled with the
    family's bias attribute (the background colour, one per class: 3 here, so the probes,
    features and target distribution have 3 classes); the intervened cell has FD per
    conditioning class, FID and the same-seed similarity to its twin."""
    from biaslab.base.io import load_npz

    res = tiny_conditional_run / "results"
    model = "biased_mnist/minority~0.2/depth~2/seed~0"
    cap = load_npz(res / "difflens" / model / "activations.npz")
    assert cap["classes"].tolist() == [0, 1, 2] and cap["probs"].shape == (24, 3)
    assert set(np.unique(cap["probs"])) <= {0.0, 1.0}  # the colour labeller is exact
    features = pd.read_parquet(res / "difflens" / "features.parquet")
    assert set(features["class_index"]) <= {0, 1, 2} and len(features) == 3 * 5
    assert set(features["dataset"]) == {"biased_mnist"}
    m = pd.read_parquet(res / "metrics.parquet")
    on = m[m["intervene"] != 1.0]
    assert set(on["dataset"]) == {"biased_mnist"} and set(on["rho_data"]) == {0.8}
    want = {"fd", "fd_training", "fid_classifier", "rho_model", "same_seed_similarity"}
    assert want <= set(on["metric"])
    fd = on[on.metric == "fd"]
    assert fd["value"].between(0, 1).all() and (fd["ci_low"] <= fd["value"]).all()
    assert (res / "figures" / "fig_fd_vs_intervention.png").stat().st_size > 1000


def test_sampler_family_figures_and_conditional_models(tiny_conditional_run):
    figs = [
        "fig_rho_vs_rho_data",
        "fig_rho_vs_steps",
        "fig_rho_vs_guidance",
        "fig_bypass",
        "fig_bias_diversity_frontier",
        "fig4_minority_vs_depth",
    ]
    for fig in figs:
        for ext in ("png", "pdf"):
            path = tiny_conditional_run / "results" / "figures" / f"{fig}.{ext}"
            assert path.stat().st_size > 1000, path
    from diffusers import UNet2DModel

    model = tiny_conditional_run / "results/models/biased_mnist/minority~0.05/depth~2/seed~0/model"
    unet = UNet2DModel.from_pretrained(model / "unet")
    assert unet.config.num_class_embeds == 4 and unet.config.in_channels == 3
    summary = (tiny_conditional_run / "results" / "tables" / "summary.md").read_text()
    assert "rho_model, recognised [95% CI]" in summary and "label adherence %" in summary
    assert "unrecognised %" in summary
    cell = (
        "sampler~heun_steps~3_eta~0.0_s_churn~10.0_guidance~1.0_bypass~0.0_bypass_schedule~constant"
        "_timestep_spacing~none_intervene~1.0_intervene_mode~none"
    )
    base = tiny_conditional_run / "results/samples/multicolour_mnist/minority~0.2/depth~2/seed~0"
    from biaslab.base.io import load_npz

    s = load_npz(base / cell / "samples.npz")
    assert s["images"].shape == (12, 3, 16, 16) and s["labels"].tolist() == [0, 1, 2] * 4


def test_sigkill_during_training_then_rerun_gives_the_same_models(tiny_run, tmp_path):
    """SIGKILL the whole workflow mid-training; the rerun resumes from the checkpoints and
    ends with the uninterrupted run's weights, byte for byte (everything downstream is a
    function of them: the tiny run's tables are compared with the goldens)."""
    proc = snakemake_popen(
        "--cores",
        "2",
        "--configfile",
        str(TINY),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = tmp_path / "results" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and not list(ckpts.rglob("last.pt")):
        assert proc.poll() is None, "workflow ended before any checkpoint was written"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(ckpts.rglob("last.pt"))
    assert not (tmp_path / "results" / "metrics.parquet").exists()

    models = sorted(
        str(p.relative_to(tiny_run)) for p in (tiny_run / "results" / "models").rglob("model")
    )
    assert len(models) == 2
    snakemake("--unlock", "--configfile", str(TINY), cwd=tmp_path, timeout=120, check=True)
    snakemake(
        *models, "--cores", "2", "--configfile", str(TINY), cwd=tmp_path, timeout=900, check=True
    )
    logs = "".join(p.read_text() for p in (tmp_path / "logs" / "train").rglob("*.log"))
    assert "resuming from" in logs
    for model in models:
        files = sorted(p for p in (tiny_run / model).rglob("*") if p.is_file())
        assert files
        for want in files:
            got = tmp_path / want.relative_to(tiny_run)
            assert got.read_bytes() == want.read_bytes(), want


def test_paper_config_dry_run_lists_full_grid(tmp_path):
    write_idx_fixture(tmp_path / "data" / "mnist")
    weights = tmp_path / "data" / "weights"
    weights.mkdir(parents=True)
    for name in ("alexnet-owt-7be5be79.pth", "inception_v3_google-0cc3c7bd.pth"):
        (weights / name).touch()
    t0 = time.perf_counter()
    proc = snakemake(
        "-n",
        "--configfile",
        str(ROOT / "config" / "paper.yaml"),
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    elapsed = time.perf_counter() - t0
    counts = job_counts(proc.stdout)
    # depth family: 6 depth variants x 4 skews x 3 training seeds, 11 sampler settings each
    # (3 of them through the model's SAE: DiffLens on every depth model);
    # sampler family: 2 coloured datasets x 4 rho x 3 depths x 3 seeds, 26 settings each,
    # and 3 more through the SAE of each Biased MNIST model (DiffLens on the colour)
    assert counts["train_diffusion"] == 72 + 72
    assert counts["collect_activations"] == counts["train_sae"] == 72 + 36
    assert counts["skewed_dataset"] == 4 + 8
    assert counts["train_classifier"] == 3
    # kNN features: once for the MNIST base set (its 4 skews index into it), once per
    # recoloured training set (2 datasets x 4 rho)
    assert counts["base_features"] == 1
    assert counts["train_features"] == 8
    assert planned_cells(proc.stdout) == 72 * 11 + 72 * 26 + 36 * 3
    # one job per model for its cells, and one for the intervened cells of each SAE model
    assert model_jobs(counts) == 144 and model_jobs(counts, "intervene") == 72 + 36
    # the sampler study's six figures, the FID frontier with them, one rule each
    study = ["rho_vs_rho_data", "rho_vs_steps", "rho_vs_guidance", "bypass"]
    study += ["bias_diversity_frontier", "bias_quality_frontier"]
    assert all(counts[f"fig_{name}"] == 1 for name in study)
    print(f"paper dry run: {elapsed:.1f} s")


def test_paper_config_without_data_is_rejected(tmp_path):
    proc = snakemake(
        "-n", "--configfile", str(ROOT / "config" / "paper.yaml"), cwd=tmp_path, timeout=120
    )
    assert proc.returncode != 0
    assert "data.root" in proc.stdout + proc.stderr
    assert shutil.which("timeout")


def _dry_run(config: str, cwd: Path) -> tuple[dict[str, int], int]:
    """A shipped config's dry run: its job counts and the cells its jobs write."""
    proc = snakemake(
        "-n", "--configfile", str(ROOT / "config" / config), cwd=cwd, timeout=120, check=True
    )
    return job_counts(proc.stdout), planned_cells(proc.stdout)


def test_cpu_repro_config_dry_run(tmp_path):
    """config/cpu-repro.yaml stays valid: 8 models (4 depths x 2 seeds), 1000 samples each."""
    counts, cells = _dry_run("cpu-repro.yaml", tmp_path)
    assert counts["train_diffusion"] == 8, counts
    assert model_jobs(counts) == 8 and cells == 8, counts


def test_cpu_depth_seeds_config_dry_run(tmp_path):
    """config/cpu-depth-seeds.yaml (published) stays valid: 5 models per depth at depths 2 and
    4, an SAE on each depth-2 model, and its 3 intervened cells there."""
    counts, cells = _dry_run("cpu-depth-seeds.yaml", tmp_path)
    assert counts["train_diffusion"] == 10 and counts["train_sae"] == 5, counts
    assert model_jobs(counts) == 10 and model_jobs(counts, "intervene") == 5, counts
    assert cells == 10 + 5 * 3


def test_cpu_difflens_seeds_config_dry_run(tmp_path):
    """config/cpu-difflens-seeds.yaml (published) stays valid: 5 trained models, each with its
    SAE, one model job for its reference cell and one for its 3 intervened cells."""
    counts, cells = _dry_run("cpu-difflens-seeds.yaml", tmp_path)
    assert counts["train_diffusion"] == counts["train_sae"] == 5, counts
    assert model_jobs(counts) == model_jobs(counts, "intervene") == 5, counts
    assert cells == 5 * 4


def test_cpu_himyb10_config_dry_run(tmp_path):
    """config/cpu-himyb10.yaml (published) stays valid: 10-class Biased MNIST, 3 trained models
    at rho 0.9, one model job each for its 10 sampler cells."""
    counts, cells = _dry_run("cpu-himyb10.yaml", tmp_path)
    assert counts["train_diffusion"] == 3, counts
    assert model_jobs(counts) == 3 and cells == 3 * 10, counts
