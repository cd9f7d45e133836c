# Models this lab did not train (biaslab.pretrained.models; config `pretrained`,
# docs/guide/pretrained.md): each model folder sampled on every cell of pretrained.grid (and
# the bypass study's rows), its images labelled by CLIP zero-shot / FairFace, gathered, drawn.
rule sample_pretrained:
    input:
        model=lambda wc: pretrained_model(wc).path,
    output:
        samples=f"{PRETRAINED_CELL}/samples.npz",
    log:
        f"logs/pretrained/{{pretrained}}/{SAMPLER}/sample.log",
    conda:
        ENV
    threads: config["resources"]["sample_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["sample_threads"],
        mem_mb=32000,
        runtime=240,
    params:
        model=lambda wc: vars(pretrained_model(wc)),
        row=pretrained_row,
        sample_seed=config["pretrained"]["sample_seed"],
        batch_size=config["pretrained"]["batch_size"],
    script:
        "../scripts/sample_pretrained.py"


rule label_pretrained:
    input:
        unpack(labeller_files),
        unpack(pretrained_reference),
        samples=f"{PRETRAINED_CELL}/samples.npz",
    output:
        predictions=f"{PRETRAINED_CELL}/predictions.parquet",
        metrics=f"{PRETRAINED_CELL}/metrics.parquet",
    log:
        f"logs/pretrained/{{pretrained}}/{SAMPLER}/label.log",
    conda:
        ENV
    threads: config["resources"]["eval_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["eval_threads"],
        mem_mb=16000,
        runtime=60,
    params:
        labellers=config["pretrained"]["labellers"],
        grid=lambda wc: pretrained_cell_columns(wc),
    script:
        "../scripts/label_pretrained.py"


rule gather_pretrained:
    input:
        metrics=TARGETS.pretrained_files("metrics.parquet"),
        predictions=TARGETS.pretrained_files("predictions.parquet"),
    output:
        metrics="results/pretrained/metrics.parquet",
        predictions="results/pretrained/predictions.parquet",
    log:
        "logs/pretrained/gather.log",
    conda:
        ENV
    script:
        "../scripts/gather_pretrained.py"


rule fig_bypass_prompts:
    input:
        metrics="results/pretrained/metrics.parquet",
    output:
        png=report(
            figure("fig_bypass_prompts", "png"),
            caption="../report/bypass_prompts.rst",
            category="Pretrained models",
        ),
        pdf=figure("fig_bypass_prompts", "pdf"),
    log:
        "logs/figures/bypass_prompts.log",
    conda:
        ENV
    resources:
        runtime=10,
    params:
        options={"rows": TARGETS.study_rows},
    script:
        "../scripts/figure.py"


rule fig_bypass_grid:
    input:
        samples=lambda wc: TARGETS.study_files(wc.pretrained, "samples.npz"),
    output:
        png=report(
            figure("fig_bypass_grid/{pretrained}", "png"),
            caption="../report/bypass_grid.rst",
            category="Pretrained models",
            subcategory="{pretrained}",
        ),
        pdf=figure("fig_bypass_grid/{pretrained}", "pdf"),
    log:
        "logs/figures/bypass_grid/{pretrained}.log",
    conda:
        ENV
    resources:
        runtime=10,
    params:
        bypass=[r["bypass"] for r in TARGETS.study_rows],
        classes=lambda wc: list(pretrained_model(wc).classes),
        n_seeds=config["pretrained"]["bypass_study"]["n_seeds"],
    script:
        "../scripts/fig_bypass_grid.py"
