# "What the model knows" (biaslab.probe): one table per trained model, read beside every
# evaluation row of it (probe_learned) and drawn in fig_probe.
rule probe:
    input:
        model=MODEL_DIR,
        train=TRAIN,
        classifier=CLASS_CLASSIFIER,
        attribute_classifier=attribute_classifier,
    output:
        probe=PROBE,
    log:
        f"logs/probe/{MODEL}.log",
    group:
        "sample_eval"
    conda:
        ENV
    threads: config["resources"]["eval_threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["resources"]["eval_threads"],
        mem_mb=8000,
        runtime=60,
    params:
        grid=grid_params,
        probe=config["probe"],
    script:
        "../scripts/probe.py"
