rule train_diffusion:
    input:
        data="results/data/{dataset}/minority~{fraction}/train.npz",
    output:
        model=directory(f"results/models/{MODEL}/model"),
        log=f"results/models/{MODEL}/train_log.parquet",
    log:
        f"logs/train/{MODEL}.log",
    conda:
        ENV
    threads: config["resources"]["train_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["train_threads"],
        mem_mb=8000,
        runtime=720,
    params:
        training=train_params,
        grid=grid_params,
        checkpoint_dir=lambda wc: f"results/checkpoints/{MODEL}".format(**wc),
    script:
        "../scripts/train_diffusion.py"
