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
