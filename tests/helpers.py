"""Shared helpers for tests that run Snakemake (always under `timeout -k`)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "config" / "tiny.yaml"
TINY_CONDITIONAL = ROOT / "tests" / "config" / "tiny-conditional.yaml"
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


def planned_cells(stdout: str) -> int:
    """The sampler cells a (dry) run's jobs write: the ``samples.npz`` files among their
    outputs (one model job writes every cell of its model)."""
    return sum(
        line.count("/samples.npz")
        for line in stdout.splitlines()
        if line.strip().startswith("output:")
    )


def model_jobs(counts: dict[str, int], kind: str = "sample_evaluate") -> int:
    """The model jobs of ``kind`` (``sample_evaluate`` or ``intervene``) over every family."""
    return sum(n for rule, n in counts.items() if rule.startswith(f"{kind}_"))


def write_idx_images(path: Path, images) -> None:
    """An IDX images file (magic 0x00000803, big-endian count, rows, columns; uint8 pixels)."""
    import numpy as np

    n, h, w = images.shape
    path.write_bytes(struct.pack(">iiii", 0x803, n, h, w) + np.asarray(images, np.uint8).tobytes())


def write_idx_labels(path: Path, labels) -> None:
    """An IDX labels file (magic 0x00000801, big-endian count; uint8 labels)."""
    import numpy as np

    header = struct.pack(">ii", 0x801, len(labels))
    path.write_bytes(header + np.asarray(labels, np.uint8).tobytes())


#: labels of the tiny MNIST of :func:`write_idx_fixture`: every digit, 6 and 9 several times
IDX_TRAIN_LABELS = (6, 9, 0, 6, 1, 9, 2, 6, 3, 9, 4, 6, 5, 9, 7, 6, 8, 9)
IDX_TEST_LABELS = (9, 6, 7, 6, 9, 2, 6, 9)


def write_idx_fixture(root: Path, seed: int = 0) -> Path:
    """A tiny valid MNIST under ``<root>/MNIST/raw/`` (the four IDX files torchvision reads):
    random 28x28 digits labelled :data:`IDX_TRAIN_LABELS` / :data:`IDX_TEST_LABELS`. Returns
    the raw folder."""
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, labels in (("train", IDX_TRAIN_LABELS), ("t10k", IDX_TEST_LABELS)):
        images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        write_idx_images(raw / f"{split}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{split}-labels-idx1-ubyte", labels)
    return raw


GOLDEN = ROOT / "tests" / "golden"


def assert_matches_golden(results: Path, name: str) -> None:
    """``results/{metrics,predictions}.parquet`` of a tiny run equal the golden copies
    (tests/golden/README.md: which commit wrote them, and why they were last rewritten), up to
    row order, every column compared, within float noise between CPUs."""
    import pandas as pd

    from biaslab.base.columns import GRID_COLUMNS

    for table in ("metrics", "predictions"):
        got = pd.read_parquet(results / f"{table}.parquet")
        want = pd.read_parquet(GOLDEN / f"{name}_{table}.parquet")
        assert list(got.columns) == list(want.columns), (table, list(got.columns))
        ids = ("metric", "k", "group", "backbone") if table == "metrics" else ("sample_index",)
        keys = [c for c in (*GRID_COLUMNS, *ids) if c in want.columns]
        got = got.sort_values(keys, kind="stable").reset_index(drop=True)
        want = want.sort_values(keys, kind="stable").reset_index(drop=True)
        # rtol 2e-3 / atol 1e-4: float noise between CPUs (another machine of the same kind
        # gave classifier confidences up to 7e-4 apart, FD up to 7e-4 relative); a changed
        # sampler, metric or row moves values far more than that
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=2e-3, atol=1e-4)
