rule base_dataset:
    output:
        data=BASE,
        manifest="results/data/{dataset}/base_manifest.parquet",
    log:
        "logs/data/{dataset}/base.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        data=lambda wc: family(wc).data,
    script:
        "../scripts/base_dataset.py"


rule skewed_dataset:
    input:
        base=BASE,
    output:
        data=TRAIN,
        manifest="results/data/{dataset}/minority~{fraction}/manifest.parquet",
    log:
        "logs/data/{dataset}/minority~{fraction}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        data=lambda wc: family(wc).data,
        fraction=lambda wc: float(wc.fraction),
    script:
        "../scripts/skewed_dataset.py"


# The evaluation classifiers, trained on the real held-in images: the class (every dataset),
# BFFHQ's gender ("bias") and CelebA's Male x Blond_Hair groups ("group").
rule train_classifier:
    input:
        base=BASE,
    output:
        model=CLASSIFIER,
        accuracy="results/classifier/{dataset}/{target}_accuracy.parquet",
    log:
        "logs/classifier/{dataset}_{target}.log",
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
            "source": family(wc).source,
            "resolution": family(wc).resolution,
        },
    script:
        "../scripts/train_classifier.py"
