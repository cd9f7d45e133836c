"""The workflow's path templates: every rule and every target is built from these (the
Snakefile's ``common.smk`` imports them; nothing parses a path back into values)."""

from __future__ import annotations

#: One trained model's wildcards.
MODEL = "{dataset}/minority~{fraction}/depth~{depth}/seed~{seed}"
BASE = "results/data/{dataset}/base.npz"
TRAIN = "results/data/{dataset}/minority~{fraction}/train.npz"
CLASSIFIER = "results/classifier/{dataset}/{target}_classifier.pt"
CLASS_CLASSIFIER = CLASSIFIER.replace("{target}", "class")
MODEL_DIR = f"results/models/{MODEL}/model"
TRAIN_LOG = f"results/models/{MODEL}/train_log.parquet"
#: A model job's per-cell files (``{MODEL}`` and ``{cell}``, a Paramspace instance pattern).
SAMPLES_OF = "results/samples/{MODEL}/{cell}/samples.npz"
EVAL_OF = "results/eval/{MODEL}/{cell}"
PROBE = f"results/probe/{MODEL}/probe.parquet"
BASE_FEATURES = "results/features/{dataset}/base_features.npz"
TRAIN_FEATURES = "results/features/{dataset}/minority~{fraction}/train_features.npz"
DIFFLENS = f"results/difflens/{MODEL}"
ACTIVATIONS = f"{DIFFLENS}/activations.npz"
SAE_FILE = f"{DIFFLENS}/sae.pt"
FEATURES = f"{DIFFLENS}/features.npz"
#: A pretrained model's sampler cell (``{cell}``: its Paramspace pattern).
PRETRAINED_CELL_OF = "results/pretrained/{pretrained}/{cell}"
#: The ``benchmark:`` file of a model job (Snakemake's TSV: wall seconds, memory, CPU time).
BENCHMARK = "results/benchmarks/{rule}/" + MODEL + ".tsv"


def figure(stem: str, ext: str) -> str:
    """The file of figure ``stem`` (its name, or a per-model path under it)."""
    return f"results/figures/{stem}.{ext}"
