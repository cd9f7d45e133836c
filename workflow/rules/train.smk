rule train_diffusion:
    input:
        data=TRAIN,
    output:
        model=directory(MODEL_DIR),
        log=TRAIN_LOG,
    log:
        f"logs/train/{MODEL}.log",
    benchmark:
        benchmark_of("train_diffusion")
    conda:
        ENV
    threads: config["resources"]["train_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["train_threads"],
        mem_mb=8000,
        runtime=720,
    params:
        training=lambda wc: family(wc).train_params(wc.depth, wc.seed),
        grid=grid_params,
        checkpoint_dir=lambda wc: f"results/checkpoints/{MODEL}".format(**wc),
    script:
        "../scripts/train_diffusion.py"
