"""Job start-up: what a workflow job pays before its first line of real work.

For each script under ``workflow/scripts/``, a fresh interpreter runs the script's top-level
imports (its import statements, in order: what the job does before it reads its first input)
and exits; the whole process is timed (start-up included), median of ``--repeats`` runs.
Beside them, in the same process and on the same machine: ``python -c "pass"`` (the
interpreter) and ``python -c "import torch"`` (the floor of any job that touches a tensor).
Each script's fixed cost is reported as a ratio to ``import torch``, with the heavy modules
its imports load (``HEAVY``: the ones a job should load only when it needs them).

    python benchmarks/bench_startup.py                 # every script, 3 runs each
    python benchmarks/bench_startup.py sample evaluate --repeats 5

It measures; it asserts nothing (tests never check wall time).
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"
#: Modules a job should import only when it uses them.
HEAVY = (
    "torch",
    "diffusers",
    "transformers",
    "torch._dynamo",
    "torchmetrics",
    "captum",
    "lpips",
    "scipy",
    "sklearn",
    "matplotlib",
    "pandas",
)


def import_block(path: Path) -> str:
    """The script's top-level import statements, in order."""
    text = path.read_text()
    nodes = [n for n in ast.parse(text).body if isinstance(n, ast.Import | ast.ImportFrom)]
    return "\n".join(ast.get_source_segment(text, n) for n in nodes)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def wall(code: str, repeats: int) -> float:
    """Median wall time of a fresh ``python -c code`` (whole process)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def heavy_loaded(code: str) -> list[str]:
    """The ``HEAVY`` modules in ``sys.modules`` after ``code``."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"imports failed:\n{code}\n{out.stderr[-2000:]}")
    return [m for m in out.stdout.strip().split(",") if m]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scripts", nargs="*", help="script stems (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    paths = sorted(SCRIPTS.glob("*.py"))
    if args.scripts:
        paths = [p for p in paths if p.stem in args.scripts]
    interpreter = wall("pass", args.repeats)
    torch_floor = wall("import torch", args.repeats)
    print(f"python -c pass: {interpreter:.2f} s; import torch: {torch_floor:.2f} s (= 1.0x)")
    print(f"{'script':24} {'imports (s)':>11} {'x torch':>8}  heavy modules loaded")
    for path in paths:
        code = import_block(path)
        t = wall(code, args.repeats)
        mods = ", ".join(heavy_loaded(code))
        print(f"{path.stem:24} {t:11.2f} {t / torch_floor:8.1f}  {mods}")


if __name__ == "__main__":
    main()
