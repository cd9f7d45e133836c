# kNN-backbone features of the real images, computed once and shared by every cell: of a base
# set's held-in pool (every skew's training set indexes into it), or of one training set
# (recoloured MNIST, recoloured per rho).
rule base_features:
    input:
        data=BASE,
        classifier=CLASS_CLASSIFIER,
    output:
        features=BASE_FEATURES,
    log:
        "logs/features/{dataset}/base.log",
    conda:
        ENV
    threads: config["resources"]["eval_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["eval_threads"],
        mem_mb=8000,
        runtime=120,
    params:
        **feature_params("base"),
    script:
        "../scripts/features.py"


rule train_features:
    input:
        data=TRAIN,
        classifier=CLASS_CLASSIFIER,
    output:
        features=TRAIN_FEATURES,
    log:
        "logs/features/{dataset}/minority~{fraction}.log",
    conda:
        ENV
    threads: config["resources"]["eval_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["eval_threads"],
        mem_mb=8000,
        runtime=120,
    params:
        **feature_params("train"),
    script:
        "../scripts/features.py"


rule gather_metrics:
    input:
        metrics=TARGETS.eval_files("metrics.parquet") + TARGETS.same_seed_tables(),
        predictions=TARGETS.eval_files("predictions.parquet"),
        logs=TARGETS.model_paths(TRAIN_LOG),
        probes=TARGETS.model_paths(PROBE),
    output:
        metrics="results/metrics.parquet",
        predictions="results/predictions.parquet",
        train_log="results/train_log.parquet",
        probe="results/probe.parquet",
    log:
        "logs/gather_metrics.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/gather_metrics.py"
