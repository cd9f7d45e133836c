"""The benchmark scripts run and report what they measure (correctness only, never speed)."""

from __future__ import annotations

import math
import sys

import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

pytestmark = pytest.mark.usefixtures("one_thread")


def test_measure_budget_families_of_the_paper_configs():
    import measure_budget

    fams = measure_budget.families(measure_budget.load_config(ROOT / "config" / "paper.yaml"))
    assert fams["mnist69"] == {
        "resolution": 32,
        "channels": 1,
        "depths": ["2", "2L", "3", "4", "5", "6"],
    }
    assert fams["biased_mnist"]["channels"] == 3 and fams["biased_mnist"]["depths"] == [
        "2",
        "4",
        "6",
    ]
    faces = measure_budget.families(
        measure_budget.load_config(ROOT / "config" / "paper-celeba.yaml")
    )
    assert faces["celeba"]["resolution"] == 64 and faces["celeba"]["channels"] == 3
    assert faces["bffhq"]["resolution"] == 64


def test_measure_budget_runs_and_turns_rates_into_hours(capsys):
    import measure_budget

    from biaslab.plan.budget import estimate

    cfg = ROOT / "tests" / "config" / "tiny.yaml"
    rows = measure_budget.main(
        [
            str(cfg),
            "--steps",
            "2",
            "--sampling-steps",
            "2",
            "--sampling-batch",
            "4",
            "--threads",
            "1",
        ]
    )
    counts = estimate(measure_budget.load_config(cfg))
    assert [r["family"] for r in rows] == [c["family"] for c in counts]
    for row, count in zip(rows, counts, strict=True):
        assert row["train_images"] == count["train_images"]
        assert row["sample_evals"] == count["sample_evals"]
        assert 0 < row["train_hours"] < math.inf and 0 < row["sample_hours"] < math.inf
    out = capsys.readouterr().out
    assert "images/s" in out and "total:" in out and "CPU" in out


def test_bench_sd_tiny_runs_and_agrees_with_stable_diffusion_pipeline():
    import bench_sd

    out = bench_sd.main(["--tiny", "--n", "2", "--steps", "3", "--repeats", "1"])
    assert out["biaslab_images_per_s"] > 0 and out["diffusers_images_per_s"] > 0
    assert out["max_latent_diff"] < 1e-4


def test_job_seconds_reads_a_snakemake_log():
    import job_seconds

    log = """
[Sun Dec  6 15:32:12 2026]
localrule sample_evaluate_mnist69:
    input: a
    jobid: 7
[Sun Dec  6 15:32:14 2026]
rule train_diffusion:
    jobid: 3
[Sun Dec  6 15:32:20 2026]
Finished jobid: 7 (Rule: sample_evaluate_mnist69)
[Sun Dec  6 15:33:14 2026]
Finished jobid: 3 (Rule: train_diffusion)
[Sun Dec  6 15:33:15 2026]
rule never_finished:
    jobid: 9
"""
    assert job_seconds.job_seconds(log) == {
        "sample_evaluate_mnist69": [8.0],
        "train_diffusion": [60.0],
    }


def test_bench_knn_quick_agrees_with_float64_brute_force():
    import bench_knn

    rows = bench_knn.main(["--quick", "--cases", "cosine:16,l2:48", "--queries", "20"])
    by = {(r["case"], r["method"]): r for r in rows}
    for case in ("cosine:16", "l2:48"):
        ref = by[(case, "cdist64+topk")]
        assert ref["max_abs_value_diff"] < 1e-9  # the same distances as the project's
        assert ref["rows_same_neighbours"] >= 19 / 20  # query 0: a tie, in any order there
        assert by[(case, "project")]["rows_same_neighbours"] == 1.0
