"""Malformed configs are rejected before any job runs, with a message naming the key."""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.helpers import ROOT, snakemake

BAD_CONFIGS = {
    "wrong type": ("training:\n  steps: many\n", "['training']['steps']"),
    "float for int": ("training:\n  batch_size: 2.5\n", "['training']['batch_size']"),
    "fraction zero": ("minority_fractions: [0.0]\n", "['minority_fractions']"),
    "fraction above one": ("minority_fractions: [1.5]\n", "['minority_fractions']"),
    "unknown depth": ("model:\n  depths: ['7']\n", "['model']['depths']"),
    "unknown top-level key": ("trainig:\n  steps: 3\n", "'trainig' was unexpected"),
    "unknown nested key": ("training:\n  lr_rate: 0.1\n", "'lr_rate' was unexpected"),
    "missing data path": ("data:\n  source: mnist\n  root: /nonexistent/mnist\n", "data.root"),
    "mnist without root": ("data:\n  source: mnist\n", "data.root"),
    "depth too deep for resolution": (
        "data:\n  resolution: 16\nmodel:\n  depths: ['2', '6']\n",
        "data.resolution",
    ),
    "ddpm with eta": (
        "sampling:\n  grid:\n    - {sampler: ddpm, steps: 10, eta: 0.5}\n",
        "sampling.grid[0].eta",
    ),
    "missing weights file": (
        "metrics:\n  backbone: alex\n  backbone_weights: /nonexistent/alexnet.pth\n",
        "metrics.backbone_weights",
    ),
    "missing kNN weights file": (
        "metrics:\n  knn_backbone: inception\n  knn_backbone_weights: /nonexistent/i.pth\n",
        "metrics.knn_backbone_weights",
    ),
    "missing FID Inception weights file": (
        "metrics:\n  fid_inception_weights: /nonexistent/pt_inception.pth\n",
        "metrics.fid_inception_weights",
    ),
    "same classes": ("data:\n  majority_class: 6\n  minority_class: 6\n", "data.minority_class"),
    "negative samples": ("sampling:\n  n_samples: -3\n", "['sampling']['n_samples']"),
    "guidance on an unconditional model": (
        "sampling:\n  grid:\n    - {sampler: ddim, steps: 10, guidance: 1.0}\n",
        "sampling.grid[0].guidance",
    ),
    "eta on heun": (
        "sampling:\n  grid:\n    - {sampler: heun, steps: 10, eta: 0.5}\n",
        "sampling.grid[0].eta",
    ),
    "s_churn on ddim": (
        "sampling:\n  grid:\n    - {sampler: ddim, steps: 10}\n"
        "    - {sampler: ddim, steps: 10, s_churn: 5}\n",
        "sampling.grid[1].s_churn",
    ),
    "bypass above one": (
        "sampling:\n  grid:\n    - {sampler: ddim, steps: 10, bypass: 1.5}\n",
        "bypass",
    ),
    "unknown sampler": (
        "sampling:\n  grid:\n    - {sampler: plms, steps: 10}\n",
        "plms",
    ),
    "duplicate knob rows": (
        "sampling:\n  grid:\n    - {sampler: ddim, steps: 10}\n"
        "    - {sampler: ddim, steps: 10, eta: 0.0, bypass: 0.0}\n",
        "sampling.grid: duplicate rows",
    ),
    "conditional rho below chance": (
        "conditional:\n  datasets: [biased_mnist]\n  classes: [0, 1, 2, 3]\n  rhos: [0.2]\n",
        "conditional.rhos",
    ),
    "unknown conditional dataset": (
        "conditional:\n  datasets: [cmnist]\n",
        "['conditional']['datasets']",
    ),
    "conditional grid checked too": (
        "conditional:\n  datasets: [biased_mnist]\n  grid:\n    - {sampler: dpmpp, steps: 10, "
        "s_churn: 1}\n",
        "conditional.grid[0].s_churn",
    ),
    "conditional samples below classes": (
        "conditional:\n  datasets: [biased_mnist]\n  n_samples: 5\n",
        "conditional.n_samples",
    ),
    # issue 15: near-duplicates, empty splits and sets, impossible sizes
    "near-duplicate fractions": (
        "minority_fractions: [0.2, 0.20000000001]\n",
        "minority_fractions: 0.2 and 0.20000000001 are the same share",
    ),
    "near-duplicate rhos": (
        "conditional:\n  datasets: [biased_mnist]\n  classes: [0, 1]\n"
        "  rhos: [0.9, 0.90000000001]\n",
        "conditional.rhos",
    ),
    "held-in split empty": ("data:\n  heldout_fraction: 0.999\n", "data.heldout_fraction"),
    "held-out split empty": ("data:\n  heldout_fraction: 0.0009\n", "data.heldout_fraction"),
    "no minority image": ("data:\n  n_train: 2\n", "data.n_train / minority_fractions"),
    "fraction rounds below one image": (
        "minority_fractions: [0.00001]\n",
        "data.n_train / minority_fractions",
    ),
    "knn_k above the training set": (
        "data:\n  n_train: 20\nmetrics:\n  knn_k: [1, 50]\n",
        "metrics.knn_k",
    ),
    "steps above the training timesteps": (
        "training:\n  num_train_timesteps: 100\nsampling:\n  grid:\n"
        "    - {sampler: ddim, steps: 200}\n",
        "sampling.grid[0].steps",
    ),
    "conditional n_train below the classes": (
        "conditional:\n  datasets: [biased_mnist]\n  classes: [0, 1, 2]\n  n_train: 2\n",
        "conditional.n_train",
    ),
    "conditional set without a conflicting image": (
        "conditional:\n  datasets: [biased_mnist]\n  classes: [0, 1]\n  n_train: 20\n"
        "  rhos: [0.99]\n",
        "conditional.rhos / conditional.n_train",
    ),
    "absurd n_samples": ("sampling:\n  n_samples: 1000000000\n", "['sampling']['n_samples']"),
    "claim on an unknown column": (
        "claims:\n  - {id: a, vary: depth, from: '2', to: '4', metric: minority_share,\n"
        "     expect: decrease, where: {colour: red}}\n",
        "claims[0].where",
    ),
    "claim with a level and a contrast": (
        "claims:\n  - {id: a, vary: depth, from: '2', to: '4', metric: minority_share,\n"
        "     expect: decrease, at_least: 0.9}\n",
        "claims[0].vary: a level claim (at_least) compares no cells",
    ),
    "contrast claim without expect": (
        "claims:\n  - {id: a, vary: depth, from: '2', to: '4', metric: minority_share}\n",
        "claims[0].expect: required",
    ),
    "claim with two levels": (
        "claims:\n  - {id: a, metric: label_adherence, at_least: 0.9, at_most: 1.0}\n",
        "claims[0].at_most: a level claim has one of",
    ),
    "joint claim with a fixed column": (
        "claims:\n  - {id: a, vary: [steps, s_churn], from: [6, 0], to: [160, 0],\n"
        "     metric: rho_model, expect: increase}\n",
        "claims[0].to: the same ['s_churn']",
    ),
    "joint claim with one value": (
        "claims:\n  - {id: a, vary: [steps, s_churn], from: 6, to: [160, 60],\n"
        "     metric: rho_model, expect: increase}\n",
        "claims[0].from: a list of 2 values",
    ),
    "claim with an unknown metric": (
        "claims:\n  - {id: a, vary: depth, from: '2', to: '4', metric: accuracy,\n"
        "     expect: decrease}\n",
        "['claims'][0]['metric']",
    ),
    "nan in a range": ("training:\n  ema_decay: .nan\n", "training.ema_decay"),
    "nan threshold": ("metrics:\n  confidence_threshold: .nan\n", "metrics.confidence_threshold"),
    "nan fraction of data": ("data:\n  heldout_fraction: .nan\n", "data.heldout_fraction"),
    "infinite lr": ("training:\n  lr: .inf\n", "training.lr"),
    "nan width": ("model:\n  width: .nan\n", "model.width"),
    "seed beyond 64 bits": ("training:\n  seeds: [18446744073709551616]\n", "['seeds']"),
    "sample seed beyond torch": ("sampling:\n  sample_seed: 18446744073709551616\n", "sample_seed"),
    "repeated key": (
        "sampling:\n  n_samples: 12\n  n_samples: 24\n",
        "line 3: key 'n_samples' is repeated (first at line 2)",
    ),
    "sae k above its latents": (
        "difflens:\n  datasets: [mnist69]\n  sae: {expansion: 1, k: 1000}\n",
        "difflens.sae.k",
    ),
    "more features than latents": (
        "difflens:\n  datasets: [mnist69]\n  sae: {expansion: 1, k: 4}\n"
        "  attribution: {n_features: 1000}\n",
        "difflens.attribution.n_features",
    ),
    "too many sampled images": (
        "minority_fractions: [0.1, 0.2, 0.3, 0.4]\nmodel:\n  depths: ['2', '3', '4']\n"
        "sampling:\n  n_samples: 1000000\n  grid:\n    - {sampler: ddim, steps: 10}\n"
        "    - {sampler: ddim, steps: 20}\n    - {sampler: ddim, steps: 30}\n"
        "    - {sampler: ddim, steps: 40}\n    - {sampler: ddim, steps: 50}\n",
        "sampling.n_samples",
    ),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_malformed_config_rejected_naming_key(name, tmp_path):
    text, key = BAD_CONFIGS[name]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(textwrap.dedent(text))
    proc = snakemake("-n", "--configfile", str(cfg), cwd=tmp_path, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert key in out, out
    assert "Building DAG" not in out  # rejected before the DAG (and any job) exists
    assert not (tmp_path / "results").exists()


def test_default_config_is_valid(tmp_path):
    proc = snakemake("-n", "--configfile", str(ROOT / "config.yaml"), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "train_diffusion" in proc.stdout


def test_extreme_but_valid_values_build_the_dag(tmp_path):
    """Values whose repr has an exponent (1e-07, 1e-05) become plain-decimal path labels that
    read back as the same number, so the DAG builds (they once gave a MissingInputException
    that named no key)."""
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        textwrap.dedent(
            """\
            sampling:
              grid:
                - {sampler: ddim, steps: 10, eta: 1.0e-7}
                - {sampler: heun, steps: 6, s_churn: 1.0e-5}
                - {sampler: euler, steps: 6, s_churn: 1.0e+20}
            """
        )
    )
    proc = snakemake("-n", "--configfile", str(cfg), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "eta~0.0000001" in proc.stdout and "s_churn~0.00001" in proc.stdout


def test_mismatched_idx_files_rejected_before_any_job(tmp_path):
    """A labels file shorter than its images file once mislabelled 894 of 999 digits
    silently; now the dry run stops before the DAG, naming the file."""
    from tests.helpers import write_idx_fixture

    raw = write_idx_fixture(tmp_path / "mnist")
    labels = raw / "t10k-labels-idx1-ubyte"
    data = labels.read_bytes()
    count = int.from_bytes(data[4:8], "big") - 1
    labels.write_bytes(data[:4] + count.to_bytes(4, "big") + data[8:-1])
    cfg = tmp_path / "idx.yaml"
    cfg.write_text(f"data:\n  source: mnist\n  root: {tmp_path / 'mnist'}\n")
    proc = snakemake("-n", "--configfile", str(cfg), cwd=tmp_path, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "t10k-labels-idx1-ubyte" in out, out
    assert "Building DAG" not in out


def test_check_finite_and_unique_keys_in_process(tmp_path):
    from biaslab.plan.checks import ConfigError, check_finite, check_unique_keys

    check_finite({"a": [1.0, {"b": 2}], "c": "nan"})  # strings are not numbers
    for bad, key in (({"a": {"b": float("nan")}}, "a.b"), ({"s": [0.1, float("-inf")]}, "s[1]")):
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: "):
            check_finite(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("a:\n  x: 1\nb:\n  x: 2\n")  # the same key in two mappings is fine
    check_unique_keys(ok)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb:\n  - {c: 1, c: 2}\n")
    with pytest.raises(ConfigError, match=r"line 3: key 'c' is repeated \(first at line 3\)"):
        check_unique_keys(bad)
