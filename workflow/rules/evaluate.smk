rule base_features:
    input:
        data="results/data/{dataset}/base.npz",
        classifier="results/classifier/{dataset}/classifier.pt",
    output:
        features="results/features/{dataset}/base_features.npz",
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
        scope="base",
        metrics=lambda wc: config["metrics"],
    script:
        "../scripts/train_features.py"


rule train_features:
    input:
        data="results/data/{dataset}/minority~{fraction}/train.npz",
        classifier="results/classifier/{dataset}/classifier.pt",
    output:
        features="results/features/{dataset}/minority~{fraction}/train_features.npz",
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
        scope="train",
        metrics=lambda wc: config["metrics"],
    script:
        "../scripts/train_features.py"


rule evaluate:
    input:
        samples=f"results/samples/{MODEL}/{SAMPLER}/samples.npz",
        train="results/data/{dataset}/minority~{fraction}/train.npz",
        train_features=features_file,
        classifier="results/classifier/{dataset}/classifier.pt",
        bias_classifier=lambda wc: attribute_classifier(wc, "bias"),
        group_classifier=lambda wc: attribute_classifier(wc, "group"),
    output:
        predictions=f"results/eval/{MODEL}/{SAMPLER}/predictions.parquet",
        metrics=f"results/eval/{MODEL}/{SAMPLER}/metrics.parquet",
    log:
        f"logs/evaluate/{MODEL}/{SAMPLER}.log",
    group:
        "sample_eval"
    conda:
        ENV
    threads: config["resources"]["eval_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["eval_threads"],
        mem_mb=8000,
        runtime=120,
    params:
        grid=grid_params,
        metrics=lambda wc: config["metrics"],
    script:
        "../scripts/evaluate.py"


rule gather_metrics:
    input:
        metrics=eval_files("metrics.parquet"),
        predictions=eval_files("predictions.parquet"),
        logs=expand("results/models/{model}/train_log.parquet", model=model_paths()),
    output:
        metrics="results/metrics.parquet",
        predictions="results/predictions.parquet",
        train_log="results/train_log.parquet",
    log:
        "logs/gather_metrics.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/gather_metrics.py"
