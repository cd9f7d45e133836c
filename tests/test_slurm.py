"""Integration with a live SLURM cluster (ci/slurm/cluster.sh brings one up).

Skipped when no cluster answers, unless BIASLAB_REQUIRE_SLURM=1 (as in CI), where a missing
cluster fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pandas as pd
import pytest

from tests.helpers import ROOT, TINY, snakemake, snakemake_popen

FAST_STATUS = [
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--seconds-between-status-checks",
    "2",
]
# A group job's comment names the group and its rules (sorted): one model's jobs (its cells
# and probe; the SAE model's intervened cells too) in one submission (profiles/slurm).
GROUP = "sample_eval_intervene_mnist69_sample_evaluate_mnist69"
PLAIN = "sample_evaluate_mnist69"  # the model without an SAE: alone in its group
GPU_RULES = {
    "train_diffusion",
    "base_features",
    "train_features",
    "collect_activations",
    "train_sae",
    GROUP,
    PLAIN,
    f"sample_eval_{PLAIN}",
}
CPU_RULES = {"train_classifier", "locate_features"}

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cluster_up() -> bool:
    if not shutil.which("sinfo") or not shutil.which("sacct"):
        return False
    ok = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    acct = subprocess.run(
        ["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True, timeout=30
    )
    return ok.returncode == 0 and "idle" in ok.stdout + "mix" and acct.returncode == 0


@pytest.fixture(scope="module")
def cluster():
    if not _cluster_up():
        if os.environ.get("BIASLAB_REQUIRE_SLURM") == "1":
            pytest.fail(
                "BIASLAB_REQUIRE_SLURM=1 but no SLURM cluster answers "
                "(bash ci/slurm/cluster.sh install && bash ci/slurm/cluster.sh start)"
            )
        pytest.skip("no SLURM cluster (bash ci/slurm/cluster.sh start)")


def _run_id(out: str) -> str:
    m = re.search(r"SLURM run ID: (\S+)", out)
    assert m, out[-3000:]
    return m.group(1)


def _sacct(run_id: str) -> pd.DataFrame:
    """Allocations of one Snakemake run (the plugin names every job after the run ID)."""
    out = subprocess.run(
        [
            "sacct",
            "-X",
            "-n",
            "-P",
            "-S",
            "now-2hours",
            f"--name={run_id}",
            "--format=JobID,State,Comment,AllocTRES,ExitCode",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    rows = [line.split("|") for line in out.strip().splitlines() if line]
    df = pd.DataFrame(rows, columns=["jobid", "state", "comment", "tres", "exit"])
    df["rule"] = df["comment"].str.extract(r"^rule_([a-z0-9_]+?)(?:_wildcards_|$)")[0]
    return df


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("slurm")
    proc = snakemake(
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--configfile",
        str(TINY),
        *FAST_STATUS,
        cwd=work,
        timeout=1200,
        check=True,
    )
    out = proc.stdout + proc.stderr
    print(out[-2000:])
    return work, out


def test_every_cluster_job_went_through_sbatch(slurm_run):
    _, out = slurm_run
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert submitted, out[-3000:]
    acct = _sacct(_run_id(out))
    print(acct.to_string())
    assert sorted(acct.jobid) == sorted(submitted)
    assert (acct.state == "COMPLETED").all()
    rules = set(acct.rule)
    assert {"train_classifier", "train_diffusion", "base_features"} <= rules
    assert GROUP in rules  # the SAE model's two jobs, grouped
    assert rules & {PLAIN, f"sample_eval_{PLAIN}"}  # the other model's job
    # 1 classifier + 2 trainings + 1 base-set kNN features job + the DiffLens slice's
    # activation capture, SAE and attribution + one submission per model for its cells and
    # probe (the SAE model's with its intervened cells and their same-seed tables)
    assert {"collect_activations", "train_sae", "locate_features"} <= rules
    assert len(acct) == 9, acct.rule.tolist()
    assert rules <= GPU_RULES | CPU_RULES, rules
    gpu = acct[acct.rule.isin(GPU_RULES)]
    assert gpu.tres.str.contains("gres/gpu=1").all(), gpu
    cpu_only = acct[acct.rule.isin(CPU_RULES)]
    assert not cpu_only.tres.str.contains("gpu").any(), cpu_only
    # local rules never reach the cluster
    assert not rules & {"base_dataset", "gather_metrics", "tables"}


def test_cluster_metrics_equal_local_run(slurm_run, tiny_run):
    work, _ = slurm_run
    got = pd.read_parquet(work / "results" / "metrics.parquet")
    want = pd.read_parquet(tiny_run / "results" / "metrics.parquet")
    pd.testing.assert_frame_equal(got, want)


def test_over_asking_gpus_is_rejected_by_the_cluster(cluster):
    proc = subprocess.run(
        ["sbatch", "--gpus=2", "--wrap", "true"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0


def test_failing_job_is_retried_through_sbatch_and_leaves_no_output(slurm_run, tmp_path):
    """A corrupted input: the job fails, is resubmitted per --retries, leaves nothing."""
    work, _ = slurm_run
    shutil.copytree(work / "results" / "data", tmp_path / "results" / "data")
    target = "results/models/mnist69/minority~0.2/depth~2/seed~0/model"
    snakemake(
        "--cores",
        "1",
        "--configfile",
        str(TINY),
        "--touch",
        "results/data/mnist69/minority~0.2/train.npz",
        cwd=tmp_path,
        timeout=120,
    )
    (tmp_path / "results/data/mnist69/minority~0.2/train.npz").write_bytes(b"not an npz")
    proc = snakemake(
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--configfile",
        str(TINY),
        *FAST_STATUS,
        "--retries",
        "1",
        target,
        "--allowed-rules",
        "train_diffusion",
        cwd=tmp_path,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    acct = _sacct(_run_id(out))
    print(acct.to_string())
    tries = acct[acct.rule == "train_diffusion"]
    assert len(tries) == 2 and (tries.state == "FAILED").all()  # first attempt + 1 retry
    assert not (tmp_path / target).exists()
    assert not (
        tmp_path / "results/models/mnist69/minority~0.2/depth~2/seed~0/train_log.parquet"
    ).exists()
    assert not list((tmp_path / "results").rglob("*.tmp*"))


def test_sigterm_to_running_training_job_resumes_on_retry(cluster, tmp_path):
    """scancel --signal=TERM a running training job: the profile's retries resubmit it, the
    new attempt resumes from the checkpoint and ends with an uninterrupted run's weights."""
    import signal
    import time

    import torch
    import yaml
    from safetensors.torch import load_file

    cfg = yaml.safe_load(TINY.read_text())
    cfg["training"].update(steps=600, checkpoint_every=20)
    cfg_path = tmp_path / "long.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    target = "results/models/mnist69/minority~0.2/depth~2/seed~0/model"
    slurm_dir, local_dir = tmp_path / "slurm", tmp_path / "local"
    slurm_dir.mkdir()
    local_dir.mkdir()

    proc = snakemake_popen(
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--configfile",
        str(cfg_path),
        *FAST_STATUS,
        target,
        cwd=slurm_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ckpts = slurm_dir / "results" / "checkpoints"
    deadline = time.time() + 600
    jobid = None
    while time.time() < deadline and jobid is None:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        if list(ckpts.rglob("last.pt")):
            q = subprocess.run(
                ["squeue", "-h", "-t", "R", "-o", "%i|%k"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            ids = [line.split("|")[0] for line in q.splitlines() if "rule_train_diffusion" in line]
            jobid = ids[0] if ids else None
        time.sleep(0.2)
    assert jobid, "training never ran on the cluster"
    subprocess.run(
        ["scancel", f"--signal={signal.SIGTERM.name[3:]}", jobid], check=True, timeout=30
    )
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    acct = _sacct(_run_id(out))
    print(acct.to_string())
    tries = acct[acct.rule == "train_diffusion"]
    assert len(tries) == 2, tries
    assert tries.iloc[0].state != "COMPLETED" and tries.iloc[1].state == "COMPLETED"
    log = (slurm_dir / "logs/train/mnist69/minority~0.2/depth~2/seed~0.log").read_text()
    assert "resuming from" in log

    snakemake(
        target,
        "--cores",
        "1",
        "--configfile",
        str(cfg_path),
        cwd=local_dir,
        timeout=900,
        check=True,
    )
    weights = "unet/diffusion_pytorch_model.safetensors"
    got = load_file(slurm_dir / target / weights)
    want = load_file(local_dir / target / weights)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
