"""The pretrained family through Snakemake: a tiny end-to-end run of both kinds (a random
Stable Diffusion pipeline and DDPM the test writes), and the shipped configs, which fail
before any job until their paths are set and dry-run with fixture folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from biaslab.base.io import load_npz
from biaslab.plan.budget import estimate
from biaslab.plan.pretrained import model_rows, pretrained_plan
from biaslab.sampling.registry import network_evaluations
from tests.helpers import job_counts, snakemake
from tests.pretrained_fixtures import (
    write_fairface,
    write_tiny_clip,
    write_tiny_ddpm,
    write_tiny_sd,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fixture_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained_models")
    return {
        "PATH_SD": str(write_tiny_sd(root / "sd")),
        "PATH_DDPM": str(write_tiny_ddpm(root / "ddpm")),
        "PATH_CLIP": str(write_tiny_clip(root / "clip")),
        "PATH_FAIRFACE": str(write_fairface(root / "fairface.pt")),
    }


def _tiny_config(tmp_path: Path, paths: dict[str, str]) -> Path:
    text = (ROOT / "tests" / "config" / "tiny-pretrained.yaml").read_text()
    for key, value in paths.items():
        text = text.replace(key, value)
    out = tmp_path / "tiny-pretrained.yaml"
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, fixture_paths):
    work = tmp_path_factory.mktemp("tiny_pretrained")
    config = _tiny_config(work, fixture_paths)
    snakemake("--cores", "2", "--configfile", str(config), cwd=work, timeout=900, check=True)
    return work


@pytest.mark.slow
def test_tiny_pretrained_run_writes_tidy_tables_and_figures(tiny_run):
    m = pd.read_parquet(tiny_run / "results" / "pretrained" / "metrics.parquet")
    assert set(m.dataset) == {"sd_tiny", "ddpm_tiny"}
    assert (m.guidance_scale == 1.0 + m.guidance).all()
    ddpm = m[m.dataset == "ddpm_tiny"]
    assert (ddpm.guidance == 0.0).all() and set(ddpm.sampler) == {"heun"}
    sd = m[m.dataset == "sd_tiny"]
    # grid (ddim w 1.5, heun) + the bypass study (ddim w 1.5 at p 0, already in the grid; p 1)
    cells = sd.groupby(["sampler", "guidance", "bypass"]).size()
    assert len(cells) == 3
    sim = sd[sd.metric == "cross_prompt_similarity"]
    assert len(sim) == 3 and sim.value.between(-1, 1).all() and (sim.n == 3).all()
    # CLIP-I of the bypassed cell to its unbypassed twin; CLIP diversity of every cell
    twin = sd[sd.metric == "same_seed_similarity"]
    assert list(twin.bypass) == [1.0] and twin.value.between(-1, 1).all()
    assert len(m[m.metric == "diversity_clip"]) == 4
    fd = m[(m.metric == "fd") & (m.prompt_class == "all")]
    assert set(zip(fd.labeller, fd.attribute, strict=True)) == {
        ("clip", "gender"),
        ("fairface", "gender"),
        ("fairface", "age"),
    }
    assert ((fd.ci_low <= fd.value + 1e-12) & (fd.value <= fd.ci_high + 1e-12)).all()
    share = m[(m.metric == "share") & (m.prompt_class == "woman")]
    assert set(share.attribute_value) >= {"male", "female", "Male", "Female", "0-19"}
    p = pd.read_parquet(tiny_run / "results" / "pretrained" / "predictions.parquet")
    # 3 sd cells x 6 images + 1 ddpm cell x 4 images, each labelled for 3 attributes
    assert len(p) == (3 * 6 + 4) * 3
    for name in ("fig_pretrained_fd", "fig_bypass_prompts", "fig_bypass_grid/sd_tiny"):
        assert (tiny_run / "results" / "figures" / f"{name}.png").stat().st_size > 0


@pytest.mark.slow
def test_tiny_pretrained_run_prompts_share_seeds(tiny_run):
    files = sorted((tiny_run / "results" / "pretrained" / "sd_tiny").glob("**/samples.npz"))
    assert len(files) == 3
    for f in files:
        s = load_npz(f)
        assert s["images"].shape == (6, 3, 16, 16) and list(s["classes"]) == ["woman", "girl"]
        np.testing.assert_array_equal(s["labels"], [0, 0, 0, 1, 1, 1])
        np.testing.assert_array_equal(s["seeds"][:3], s["seeds"][3:])  # same seeds per prompt


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ("config/pretrained-sd.yaml", r"pretrained.models[0].path: not set"),
        ("config/pretrained-ddpm.yaml", r"pretrained.models[0].path: not set"),
    ],
)
def test_shipped_configs_fail_before_any_job_naming_the_key(tmp_path, config, key):
    proc = snakemake(
        "-n", "--cores", "1", "--configfile", str(ROOT / config), cwd=tmp_path, timeout=300
    )
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr


def _with_paths(config: str, paths: dict[str, str], tmp_path: Path) -> Path:
    cfg = yaml.safe_load((ROOT / config).read_text())
    for m in cfg["pretrained"]["models"]:
        m["path"] = paths["PATH_SD"] if m["kind"] == "text_to_image" else paths["PATH_DDPM"]
    lab = cfg["pretrained"]["labellers"]
    if "clip" in lab:
        lab["clip"]["path"] = paths["PATH_CLIP"]
    lab["fairface"]["path"] = paths["PATH_FAIRFACE"]
    out = tmp_path / Path(config).name
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.mark.parametrize(
    ("config", "counts"),
    [
        (
            "config/pretrained-sd.yaml",
            {"sample_pretrained": 9 + 5, "label_pretrained": 14, "fig_bypass_grid": 1},
        ),
        ("config/pretrained-ddpm.yaml", {"sample_pretrained": 8, "label_pretrained": 8}),
    ],
)
def test_shipped_configs_dry_run_with_fixture_folders(tmp_path, fixture_paths, config, counts):
    cfg = _with_paths(config, fixture_paths, tmp_path)
    proc = snakemake("-n", "--cores", "1", "--configfile", str(cfg), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = job_counts(proc.stdout)
    for rule, n in counts.items():
        assert got[rule] == n, (rule, got)
    assert "train_diffusion" not in got


def test_budget_counts_pretrained_evaluations():
    cfg = yaml.safe_load((ROOT / "config/pretrained-sd.yaml").read_text())
    from biaslab.plan.checks import with_defaults

    full = with_defaults(cfg)
    rows = {r["family"]: r for r in estimate(cfg, sample_rate=10.0)}
    for m in pretrained_plan(full).values():
        r = rows[f"pretrained:{m.name}"]
        per_image = sum(network_evaluations(x) for x in model_rows(full, m))
        assert r["sample_evals"] == m.n_samples * len(m.classes) * per_image
        assert r["sample_hours"] == pytest.approx(r["sample_evals"] / 10.0 / 3600)


@pytest.mark.slow
def test_tiny_pretrained_report_has_the_figures(tiny_run, fixture_paths):
    import zipfile

    config = _tiny_config(tiny_run, fixture_paths)
    report = tiny_run / "report.zip"
    snakemake(
        "--cores",
        "1",
        "--configfile",
        str(config),
        "--report",
        str(report),
        cwd=tiny_run,
        timeout=600,
        check=True,
    )
    names = zipfile.ZipFile(report).namelist()
    for stem in ("fig_pretrained_fd.png", "fig_bypass_prompts.png", "sd_tiny.png"):
        assert any(n.endswith(stem) for n in names), stem
