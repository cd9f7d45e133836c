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
    for name in ("probe", "train_log"):
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
