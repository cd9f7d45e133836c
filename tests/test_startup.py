"""Jobs import only what they use, and parsing the Snakefile imports no torch.

Each workflow script's top-level imports run in a fresh interpreter; the heavy modules
(``bench_startup.HEAVY``) they leave in ``sys.modules`` must be among the ones its job needs.
Scripts that may load the same modules share one interpreter (the union of their imports is
within the allowance exactly when each one's is). No wall time is checked here: the costs are
measured by ``benchmarks/bench_startup.py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_startup

# diffusers' package imports bring transformers (diffusers.quantizers), torch._dynamo
# (diffusers.utils.torch_utils) and scipy with any model class: the model jobs allow them.
DIFFUSERS = {"torch", "diffusers", "transformers", "torch._dynamo", "scipy", "pandas"}
#: (scripts, the heavy modules their imports may load)
NEEDS = {
    "data": ({"base_dataset", "skewed_dataset"}, {"pandas"}),
    "gather": ({"claims", "gather_metrics", "gather_difflens", "gather_pretrained"}, {"pandas"}),
    "figures": (
        {"figure", "fig3_toy", "fig_bypass_grid", "fig_gallery", "fig_same_seed", "tables"},
        {"matplotlib", "pandas"},
    ),
    "torch": ({"features", "label_pretrained", "train_classifier"}, {"torch", "pandas"}),
    "model": (
        {
            "sample_evaluate",
            "train_diffusion",
            "collect_activations",
            "train_sae",
            "locate_features",
            "sample_pretrained",
        },
        DIFFUSERS,
    ),
}


def test_every_script_has_an_allowance():
    scripts = {p.stem for p in bench_startup.SCRIPTS.glob("*.py")}
    listed = [s for group, _ in NEEDS.values() for s in group]
    assert sorted(listed) == sorted(scripts)


@pytest.mark.parametrize("kind", sorted(NEEDS))
def test_script_imports_load_only_what_the_job_needs(kind):
    scripts, allowed = NEEDS[kind]
    code = "\n".join(
        bench_startup.import_block(bench_startup.SCRIPTS / f"{s}.py") for s in sorted(scripts)
    )
    loaded = set(bench_startup.heavy_loaded(code))
    assert loaded <= allowed, f"{kind} jobs load {sorted(loaded - allowed)}"


def test_parsing_the_snakefile_imports_no_torch(tmp_path):
    """A dry run of the tiny config (parse, config checks, plan, DAG) in a fresh interpreter:
    no torch, diffusers, torchmetrics, matplotlib or scipy in ``sys.modules`` after it."""
    code = (
        "import sys\n"
        "from snakemake.cli import main\n"
        f"sys.argv = ['snakemake', '-s', {str(ROOT / 'Snakefile')!r}, '-n', '--quiet', 'all',"
        f" '--configfile', {str(ROOT / 'tests' / 'config' / 'tiny.yaml')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print(','.join(m for m in {bench_startup.HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = set(out.stdout.strip().splitlines()[-1].split(",")) - {""}
    assert loaded <= {"pandas"}, loaded
