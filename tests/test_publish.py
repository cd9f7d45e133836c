"""tools/publish_run.py: what a published run copies, and its refusal of an unfinished run."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import publish_run


def _results(root):
    res = root / "results"
    (res / "tables").mkdir(parents=True)
    (res / "figures" / "fig5_same_seed").mkdir(parents=True)
    pd.DataFrame({"metric": ["rho_model"], "value": [0.9]}).to_parquet(res / "metrics.parquet")
    for name in ("probe", "train_log", "predictions", "aggregate", "contrasts", "claims"):
        pd.DataFrame({"x": [1]}).to_parquet(res / f"{name}.parquet")
    (res / "tables" / "summary.md").write_text("| a |\n")
    (res / "figures" / "fig_probe.png").write_bytes(b"png")
    (res / "figures" / "fig_probe.pdf").write_bytes(b"pdf")
    (res / "figures" / "fig5_same_seed" / "minority~0.1_seed~0.png").write_bytes(b"png")
    return res


def test_publish_copies_tables_figures_and_a_csv(tmp_path):
    _results(tmp_path / "run")
    dest = tmp_path / "docs" / "x"
    copied = publish_run.publish(tmp_path / "run", dest, report=False, config=tmp_path / "c.yaml")
    assert {"metrics.parquet", "metrics.csv", "probe.parquet", "train_log.parquet"} <= set(copied)
    assert "figures/fig5_same_seed/minority~0.1_seed~0.png" in copied
    assert not (dest / "figures" / "fig_probe.pdf").exists()  # PNGs only
    assert pd.read_csv(dest / "metrics.csv")["value"].tolist() == [0.9]
    assert (dest / "tables" / "summary.md").read_text() == "| a |\n"
    assert not any(c.startswith("difflens/") for c in copied)  # none in this run


def test_publish_copies_the_difflens_tables_when_there(tmp_path):
    res = _results(tmp_path / "run")
    (res / "difflens").mkdir()
    for name in ("probes", "features", "sae"):
        pd.DataFrame({"x": [2]}).to_parquet(res / "difflens" / f"{name}.parquet")
    dest = tmp_path / "docs" / "y"
    copied = publish_run.publish(tmp_path / "run", dest, report=False, config=tmp_path / "c.yaml")
    assert {"difflens/probes.parquet", "difflens/features.parquet"} <= set(copied)
    assert pd.read_parquet(dest / "difflens" / "sae.parquet")["x"].tolist() == [2]


def test_publish_refuses_an_unfinished_run(tmp_path):
    res = _results(tmp_path / "run")
    (res / "probe.parquet").unlink()
    with pytest.raises(SystemExit, match=r"probe\.parquet.*did not finish"):
        publish_run.publish(tmp_path / "run", tmp_path / "d", report=False, config=tmp_path)


def test_machine_names_the_hardware():
    m = publish_run.machine()
    assert m["cpus"] >= 1 and m["cpu"] and "platform" in m


def test_a_rerun_appends_its_facts(tmp_path):
    run = {"command": "c", "snakemake": "s", "commit": "abc", "dirty": False,
           "config_file": "config.yaml", "machine": {"cpu": "x", "cpus": 2},
           "started_utc": "t", "wall_s": 60.0, "files": ["metrics.csv"]}  # fmt: skip
    publish_run.record_run(tmp_path, run)
    runs = publish_run.record_run(tmp_path, {**run, "commit": "def", "wall_s": 30.0})
    assert [r["commit"] for r in runs] == ["abc", "def"]
    md = publish_run.run_facts(runs)
    assert "1. `c`" in md and "2. `c`" in md and "0.5 min" in md and "`def`" in md


def _claims(verdicts):
    return pd.DataFrame(
        {"claim": ["a", "b"], "metric": ["minority_share"] * 2, "dataset": ["mnist69"] * 2,
         "depth": ["4", "4"], "bypass": [0.0, float("nan")], "verdict": verdicts,
         "effect": [-0.1, 0.02], "ci_low": [-0.2, -0.01], "ci_high": [-0.01, 0.05],
         "n_models": [5, 5]}
    )  # fmt: skip


def test_compare_verdicts_pairs_claims_by_cell():
    t = publish_run.compare_verdicts(
        _claims(["held", "inconclusive"]), _claims(["held", "reversed"])
    )
    assert t.set_index("claim")["same"].to_dict() == {"a": True, "b": False}


def test_verify_reruns_the_published_config_and_compares(tmp_path, monkeypatch, capsys):
    name = "verify-test-run"
    monkeypatch.setattr(publish_run, "ROOT", tmp_path)
    dest = tmp_path / "docs" / "results" / name
    dest.mkdir(parents=True)
    run = {"config": "claims: []\n", "command": "c"}
    (dest / "run.json").write_text(__import__("json").dumps({"runs": [run]}))
    _claims(["held", "held"]).to_parquet(dest / "claims.parquet")
    calls = []

    def fake_run(cmd, **kw):  # the workflow: writes the rerun's claims
        calls.append(cmd)
        workdir = tmp_path / "scratch"
        assert (workdir / "config.yaml").read_text() == "claims: []\n"
        (workdir / "results").mkdir(parents=True, exist_ok=True)
        _claims(["held", "reversed"]).to_parquet(workdir / "results" / "claims.parquet")

    monkeypatch.setattr(publish_run.subprocess, "run", fake_run)
    rc = publish_run.verify(name, cores=1, extra=[], scratch=tmp_path / "scratch")
    assert rc == 1 and "results/claims.parquet" in calls[0]
    assert "1 of 2 verdicts the same" in capsys.readouterr().out


def test_verify_maps_the_pre_issue_26_metric_names(tmp_path, monkeypatch, capsys):
    """A run published with claims on ``fid`` (then the classifier-feature FID) is rerun with
    ``fid_classifier``; its published claims table is mapped on read, the file untouched."""
    name = "verify-legacy"
    monkeypatch.setattr(publish_run, "ROOT", tmp_path)
    dest = tmp_path / "docs" / "results" / name
    dest.mkdir(parents=True)
    config = "claims:\n- {id: a, vary: intervene, from: 1, to: 64, metric: fid, expect: increase}\n"
    run = {"config": config, "command": "c"}
    (dest / "run.json").write_text(__import__("json").dumps({"runs": [run]}))
    old = _claims(["held", "held"]).assign(metric="fid", backbone="classifier")
    old.to_parquet(dest / "claims.parquet")
    before = (dest / "claims.parquet").read_bytes()

    def fake_run(cmd, **kw):
        text = (tmp_path / "scratch" / "config.yaml").read_text()
        assert "metric: fid_classifier" in text and "metric: fid\n" not in text
        (tmp_path / "scratch" / "results").mkdir(parents=True, exist_ok=True)
        new = _claims(["held", "held"]).assign(metric="fid_classifier", backbone="classifier")
        new.to_parquet(tmp_path / "scratch" / "results" / "claims.parquet")

    monkeypatch.setattr(publish_run.subprocess, "run", fake_run)
    assert publish_run.verify(name, cores=1, extra=[], scratch=tmp_path / "scratch") == 0
    assert "2 of 2 verdicts the same" in capsys.readouterr().out
    assert (dest / "claims.parquet").read_bytes() == before
    assert publish_run.legacy_config("claims: []\n") == "claims: []\n"


def test_run_facts_embed_the_claims_table():
    run = {"command": "c", "snakemake": "s", "commit": "abc", "dirty": False,
           "config_file": "config.yaml", "machine": {"cpu": "x", "cpus": 2},
           "started_utc": "t", "wall_s": 60.0, "files": []}  # fmt: skip
    md = publish_run.run_facts([run], "| claim | verdict |\n|---|---|\n| a | **held** |\n")
    assert "## Claims" in md and "**held**" in md
