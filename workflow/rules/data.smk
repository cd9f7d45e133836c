rule base_dataset:
    output:
        data="results/data/{dataset}/base.npz",
        manifest="results/data/{dataset}/base_manifest.parquet",
    log:
        "logs/data/{dataset}/base.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        data=dataset_settings,
    script:
        "../scripts/base_dataset.py"


rule skewed_dataset:
    input:
        base="results/data/{dataset}/base.npz",
    output:
        data="results/data/{dataset}/minority~{fraction}/train.npz",
        manifest="results/data/{dataset}/minority~{fraction}/manifest.parquet",
    log:
        "logs/data/{dataset}/minority~{fraction}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        data=dataset_settings,
        fraction=lambda wc: float(wc.fraction),
    script:
        "../scripts/skewed_dataset.py"


rule train_classifier:
    input:
        base="results/data/{dataset}/base.npz",
    output:
        model="results/classifier/{dataset}/classifier.pt",
        accuracy="results/classifier/{dataset}/accuracy.parquet",
    log:
        "logs/classifier/{dataset}.log",
    conda:
        ENV
    threads: config["resources"]["eval_threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        classifier=lambda wc: config["classifier"],
        target="class",
        grid=lambda wc: {
            "dataset": wc.dataset,
            "source": source(wc.dataset),
            "resolution": resolution(wc.dataset),
        },
    script:
        "../scripts/train_classifier.py"


rule train_attribute_classifier:
    input:
        base="results/data/{dataset}/base.npz",
    output:
        model="results/classifier/{dataset}/{target}_classifier.pt",
        accuracy="results/classifier/{dataset}/{target}_accuracy.parquet",
    log:
        "logs/classifier/{dataset}_{target}.log",
    wildcard_constraints:
        target="bias|group",
    conda:
        ENV
    threads: config["resources"]["eval_threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        classifier=lambda wc: config["classifier"],
        target=lambda wc: wc.target,
        grid=lambda wc: {
            "dataset": wc.dataset,
            "source": source(wc.dataset),
            "resolution": resolution(wc.dataset),
        },
    script:
        "../scripts/train_classifier.py"
