rule sample:
    input:
        unpack(sample_inputs),
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
        difflens=lambda wc: (
            {"target": list(family(wc).difflens["target"])}
            if family(wc).difflens is not None
            else None
        ),
    script:
        "../scripts/sample.py"
