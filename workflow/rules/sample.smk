rule sample:
    input:
        model=MODEL_DIR,
    output:
        samples=SAMPLES,
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
            **family(wc).sampling_params(knob_values(wc)),
            "batch_size": int(config["sampling"]["batch_size"]),
        },
    script:
        "../scripts/sample.py"
