"""Shared helpers for tests that run Snakemake (always under `timeout -k`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")


def snakemake_cmd(*args: str, timeout: int) -> list[str]:
    return ["timeout", "-k", "10", str(timeout), SNAKEMAKE, "-s", str(ROOT / "Snakefile"), *args]


def snakemake_popen(*args: str, cwd: Path, timeout: int = 900, **kw) -> subprocess.Popen:
    """Snakemake in the background, in its own session (so a test can killpg it)."""
    return subprocess.Popen(
        snakemake_cmd(*args, timeout=timeout), cwd=cwd, start_new_session=True, text=True, **kw
    )


def snakemake(
    *args: str, cwd: Path, timeout: int = 600, check: bool = False, **kw
) -> subprocess.CompletedProcess:
    cmd = snakemake_cmd(*args, timeout=timeout)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-4000:]}"
        )
    return proc


def job_counts(stdout: str) -> dict[str, int]:
    """The "Job stats" table of a (dry) run: rule name -> number of jobs."""
    counts = {}
    for line in stdout.split("Job stats:")[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def write_idx_fixture(root: Path) -> None:
    """Empty stand-ins for the four MNIST IDX files (existence is all a dry run checks)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / name).touch()


GOLDEN = ROOT / "tests" / "golden"
#: Whether ``amplification`` has the field's sign (positive: the majority share grew); the
#: golden tables have the old one (generated minus training minority share).
AMPLIFICATION_FLIPPED = True


def assert_matches_golden(results: Path, name: str) -> None:
    """``results/{metrics,predictions}.parquet`` of a tiny run equal the golden copies written
    before the restructuring (tests/golden/README.md), up to row order. Changes made on
    purpose since: ``amplification`` is positive when the majority share grew (it was
    generated minus training minority share)."""
    import pandas as pd

    from biaslab.grid import GRID_COLUMNS

    for table in ("metrics", "predictions"):
        got = pd.read_parquet(results / f"{table}.parquet")
        want = pd.read_parquet(GOLDEN / f"{name}_{table}.parquet")
        if table == "metrics" and AMPLIFICATION_FLIPPED:
            flip = want["metric"] == "amplification"
            want.loc[flip, "value"] = -want.loc[flip, "value"]
        assert list(got.columns) == list(want.columns), (table, list(got.columns))
        ids = ("metric", "k", "group", "backbone") if table == "metrics" else ("sample_index",)
        keys = [*GRID_COLUMNS, *ids]
        got = got.sort_values(keys, kind="stable").reset_index(drop=True)
        want = want.sort_values(keys, kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-5, atol=1e-7)
