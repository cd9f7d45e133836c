# biaslab: depth, skew and sampler settings vs bias, diversity and memorization in diffusion
# models. Run: snakemake --cores 2 (README). Config: config.yaml, validated before any job.


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_targets(),
