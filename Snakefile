# biaslab: depth, skew and sampler settings vs bias, diversity and memorization in diffusion
# models. Run: snakemake --cores 2 (README). Config: config.yaml, validated before any job.


# config.yaml is the default run. A --configfile on the command line replaces it (Snakemake
# would layer the file on top of config.yaml, mixing the default's families into the run);
# --config key=value still updates whichever file is in use.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/difflens.smk"
include: "workflow/rules/pretrained.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


localrules:
    all,
    base_dataset,
    skewed_dataset,
    gather_metrics,
    gather_difflens,
    gather_pretrained,
    fig_bypass_prompts,
    fig_bypass_grid,
    fig_difflens_gallery,
    fig3_toy,
    tables,
    claims,


rule all:
    default_target: True
    input:
        TARGETS.all(),
