# Mechanistic debiasing (DiffLens; biaslab.difflens.steps), per model of difflens.datasets: the
# mid-block activations of a sampling loop, a top-k SAE on them, the bias features located by
# integrated gradients; the grid rows with `intervene` sample through them (intervene_<dataset>,
# workflow/rules/sample.smk).
rule collect_activations:
    input:
        model=MODEL_DIR,
        classifier=CLASS_CLASSIFIER,
        attribute_classifier=lambda wc: (
            attribute_classifier(wc) if family(wc).conditional else []
        ),
    output:
        activations=ACTIVATIONS,
    log:
        f"logs/difflens/{MODEL}/collect.log",
    conda:
        ENV
    threads: config["resources"]["sample_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["sample_threads"],
        mem_mb=16000,
        runtime=240,
    params:
        sampling=difflens_reference,
        keep_calls=lambda wc: family(wc).difflens["keep_calls"],
        n_classes=lambda wc: family(wc).difflens["n_attribute_classes"],
        conditional=lambda wc: family(wc).difflens["conditional"],
    script:
        "../scripts/collect_activations.py"


rule train_sae:
    input:
        activations=ACTIVATIONS,
        model=MODEL_DIR,
    output:
        sae=SAE_FILE,
        log=f"{DIFFLENS}/sae_log.parquet",
    log:
        f"logs/difflens/{MODEL}/train_sae.log",
    conda:
        ENV
    threads: config["resources"]["train_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["train_threads"],
        mem_mb=16000,
        runtime=240,
    params:
        grid=grid_params,
        sae=lambda wc: family(wc).difflens["sae"],
    script:
        "../scripts/train_sae.py"


rule locate_features:
    input:
        activations=ACTIVATIONS,
        sae=SAE_FILE,
        model=MODEL_DIR,
    output:
        features=FEATURES,
        table=f"{DIFFLENS}/features.parquet",
        probes=f"{DIFFLENS}/probes.parquet",
    log:
        f"logs/difflens/{MODEL}/locate.log",
    conda:
        ENV
    threads: config["resources"]["eval_threads"]
    resources:
        mem_mb=16000,
        runtime=240,
    params:
        grid=grid_params,
        attribution=lambda wc: family(wc).difflens["attribution"],
        n_classes=lambda wc: family(wc).difflens["n_attribute_classes"],
    script:
        "../scripts/locate_features.py"


rule gather_difflens:
    input:
        probes=TARGETS.difflens_paths("probes.parquet"),
        features=TARGETS.difflens_paths("features.parquet"),
        sae=TARGETS.difflens_paths("sae_log.parquet"),
    output:
        probes="results/difflens/probes.parquet",
        features="results/difflens/features.parquet",
        sae="results/difflens/sae.parquet",
    log:
        "logs/gather_difflens.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/gather_difflens.py"
