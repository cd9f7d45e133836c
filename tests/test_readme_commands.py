"""The README's command lines, run from the repository root as a user would (dry runs of the
whole DAG), plan the jobs the README states: a --configfile means exactly that file."""

from __future__ import annotations

import pytest

from tests.helpers import ROOT, job_counts, snakemake

README = (ROOT / "README.md").read_text()

# (command as the README gives it, the job counts the README states for it)
COMMANDS = [
    (
        "snakemake --cores 2",
        {"total": 54, "train_diffusion": 6, "sample_evaluate_mnist69": 4, "intervene_mnist69": 1},
    ),
    (
        "snakemake --cores 2 --configfile config/cpu-depth-seeds.yaml",
        {
            "total": 69,
            "train_diffusion": 10,
            "sample_evaluate_mnist69": 10,
            "intervene_mnist69": 5,
            "train_sae": 5,
        },
    ),
    (
        "snakemake --cores 2 --configfile config/cpu-himyb.yaml",
        {"total": 31, "train_diffusion": 6, "sample_evaluate_biased_mnist": 6},
    ),
]


@pytest.mark.parametrize(
    ("command", "expected"), COMMANDS, ids=["default", "cpu-depth-seeds", "cpu-himyb"]
)
def test_readme_command_plans_the_stated_jobs(command, expected):
    assert command in README
    assert f"{expected['total']} jobs" in README
    args = command.split()[1:]
    proc = snakemake(*args, "-n", "--forceall", "--nolock", cwd=ROOT, timeout=300, check=True)
    counts = job_counts(proc.stdout)
    assert {k: counts.get(k) for k in expected} == expected, counts
