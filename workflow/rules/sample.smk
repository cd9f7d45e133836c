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
            "sampler": wc.sampler,
            "steps": int(wc.steps),
            "eta": float(wc.eta),
            "n_samples": int(config["sampling"]["n_samples"]),
            "sample_seed": int(config["sampling"]["sample_seed"]),
            "batch_size": int(config["sampling"]["batch_size"]),
        },
    script:
        "../scripts/sample.py"
