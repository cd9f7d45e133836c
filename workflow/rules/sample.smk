rule sample:
    input:
        model=f"results/models/{MODEL}/model",
    output:
        samples=f"results/samples/{MODEL}/{SAMPLER}/samples.npz",
    log:
        f"logs/sample/{MODEL}/{SAMPLER}.log",
    group:
        "sample_eval"
    conda:
        ENV
    threads: config["resources"]["sample_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["sample_threads"],
        mem_mb=8000,
        runtime=240,
    params:
        sampling=lambda wc: {
            **sampling_params(wc),
            "batch_size": int(config["sampling"]["batch_size"]),
        },
    script:
        "../scripts/sample.py"
