"""CelebA in the pipeline: the base set from the real on-disk format, the whole DAG on a tiny
fixture release, and the Table 2/3 paper config's dry run."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from biaslab.datasets import classifier_view
from biaslab.datasets.celeba import make_base
from biaslab.datasets.mnist import DataConfig, make_skewed
from tests.helpers import ROOT, job_counts, model_jobs, planned_cells, snakemake
from tests.test_faces import make_bffhq, make_celeba

# 40 images: (male, blond, partition); 16 men (40%)
ROWS = [(int(i % 5 < 2), int(i % 7 == 0), i % 3) for i in range(40)]


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    return make_celeba(tmp_path_factory.mktemp("celeba"), rows=ROWS)


def test_celeba_base_split_by_male(celeba):
    cfg = DataConfig(
        dataset="celeba",
        source="celeba",
        root=str(celeba),
        majority_class=0,
        minority_class=1,
        resolution=16,
        heldout_fraction=0.25,
        verify_md5=False,
    )
    base = make_base(cfg)
    assert base["x_in"].shape == (30, 3, 16, 16) and base["x_out"].shape == (10, 3, 16, 16)
    assert base["classes"].tolist() == [0, 1]
    assert int((base["y_in"] == 1).sum()) == 12 and int((base["y_out"] == 1).sum()) == 4
    again = make_base(cfg)
    assert np.array_equal(base["x_in"], again["x_in"])
    # the Male x Blond_Hair groups ride along with the class split: 2 * Male + Blond_Hair
    assert np.array_equal(base["group_in"] // 2, base["y_in"])
    assert np.array_equal(base["group_out"] // 2, base["y_out"])
    groups = np.concatenate([base["group_in"], base["group_out"]])
    want = np.bincount([2 * male + blond for male, blond, _ in ROWS], minlength=4)
    assert np.bincount(groups, minlength=4).tolist() == want.tolist() == [21, 3, 13, 3]
    assert base["group_names"].tolist()[3] == "male_blond"
    view = classifier_view(base, "group")
    assert view["classes"].tolist() == [0, 1, 2, 3]
    assert np.array_equal(view["y_in"], base["group_in"])
    train = make_skewed(base, 0.4, n_train=None, seed=0)
    assert np.array_equal(train["group"], base["group_in"][train["base_index"]])


TINY_CELEBA = """
data:
  dataset: celeba
  source: celeba
  root: {root}
  majority_class: 0
  minority_class: 1
  resolution: 16
  heldout_fraction: 0.25
  verify_md5: false  # fixture annotation files are not the released ones
minority_fractions: [0.4]
model:
  depths: ["2", "3"]
  width: 0.25
training:
  steps: 30
  batch_size: 8
  lr: 1.0e-3
  warmup_steps: 2
  ema_decay: 0.9
  checkpoint_every: 10
classifier:
  epochs: 2
  min_accuracy: 0.0  # random fixture faces: nothing to learn
sampling:
  n_samples: 8
  batch_size: 8
  grid:
    - {{sampler: ddim, steps: 3}}
figures:
  grid_samples: 4
"""


@pytest.mark.slow
def test_tiny_celeba_run(celeba, tmp_path):
    cfg = tmp_path / "celeba.yaml"
    cfg.write_text(textwrap.dedent(TINY_CELEBA.format(root=celeba)))
    snakemake("--cores", "2", "--configfile", str(cfg), cwd=tmp_path, timeout=600, check=True)
    m = pd.read_parquet(tmp_path / "results" / "metrics.parquet")
    assert set(m["dataset"]) == {"celeba"} and set(m["source"]) == {"celeba"}
    share = m[m.metric == "training_minority_share"]["value"]
    assert np.allclose(share, 12 / 30)  # the held-in men share (largest set at 0.4)
    assert set(m["depth"]) == {"2", "3"}
    for fig in (
        "fig4_minority_vs_depth",
        "fig_knn_vs_k",
        "fig5_same_seed/minority~0.4_seed~0",
        "figA_minority_seeds/minority~0.4_seed~0",
    ):
        assert (tmp_path / "results" / "figures" / f"{fig}.png").stat().st_size > 1000
    # the group classifier labels every sample with a Male x Blond_Hair group
    assert (tmp_path / "results/classifier/celeba/group_classifier.pt").is_file()
    groups = m[m.metric == "group_share"]
    assert len(groups) == 2 * 4 and groups["group"].nunique() == 4
    assert np.allclose(groups.groupby("depth")["value"].sum(), 1.0)
    trained = m[m.metric == "training_group_share"].set_index(["depth", "group"])["value"]
    assert np.allclose(trained.groupby("depth").sum(), 1.0)
    p = pd.read_parquet(tmp_path / "results" / "predictions.parquet")
    assert set(p["pred_group"]) <= {0, 1, 2, 3}
    assert p["group_confidence"].between(0.25, 1).all()
    assert m.loc[~m.metric.str.contains("group_share"), "group"].isna().all()
    samples = np.load(
        tmp_path / "results/samples/celeba/minority~0.4/depth~2/seed~0/"
        "sampler~ddim_steps~3_eta~0.0_s_churn~0.0_guidance~0.0_bypass~0.0_bypass_schedule~"
        "constant_timestep_spacing~trailing_intervene~1.0_intervene_mode~none/samples.npz"
    )
    assert samples["images"].shape == (8, 3, 16, 16)


def test_paper_celeba_dry_run(tmp_path):
    # small valid releases in the real layouts (the data files are checked before any job)
    base = make_celeba(tmp_path / "data" / "celeba-root", rows=ROWS) / "celeba"
    make_bffhq(tmp_path / "data" / "bffhq-root", size=8)
    weights = tmp_path / "data" / "weights"
    weights.mkdir(parents=True)
    for name in ("alexnet-owt-7be5be79.pth", "inception_v3_google-0cc3c7bd.pth"):
        (weights / name).touch()
    # the fixture's annotation files are not the released ones (MD5)
    local = tmp_path / "fixture-md5.yaml"
    local.write_text("data: {verify_md5: false}\n")
    cfg = ROOT / "config" / "paper-celeba.yaml"
    proc = snakemake(
        "-n", "--configfile", str(cfg), str(local), cwd=tmp_path, timeout=120, check=True
    )
    counts = job_counts(proc.stdout)
    # CelebA: 6 depths x 5 sampler settings (3 through each model's SAE: DiffLens on the
    # Male attribute); BFFHQ: 4 rho x 3 depths x 13 settings (3 through each model's SAE:
    # DiffLens on gender)
    assert counts["train_diffusion"] == 6 + 12
    assert planned_cells(proc.stdout) == 30 + 12 * 13
    assert model_jobs(counts) == model_jobs(counts, "intervene") == 6 + 12
    assert counts["collect_activations"] == counts["locate_features"] == 6 + 12
    # the class classifiers of both, BFFHQ's gender (bias) and CelebA's Male x Blond_Hair
    # group classifiers: one rule, a {target} wildcard
    assert counts["train_classifier"] == 4
    # Inception kNN features once per base set (CelebA, BFFHQ's pool), none per training set
    assert counts["base_features"] == 2 and "train_features" not in counts
    (base / "list_bbox_celeba.txt").unlink()
    proc = snakemake("-n", "--configfile", str(cfg), str(local), cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "list_bbox_celeba.txt" in proc.stdout + proc.stderr
