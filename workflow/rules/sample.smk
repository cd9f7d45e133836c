# Sampling and evaluation: one job per trained model for all its sampler cells (biaslab.jobs.cells),
# outputs one folder per cell. Per family (the cells are the family's grid rows):
#   sample_evaluate_<dataset>: the probe and every unintervened cell of one model;
#   intervene_<dataset>: a model's SAE-intervened cells (DiffLens), each with the same-seed
#     similarity to its unintervened twin, after the SAE and its located features.
# One process per model instead of two per cell: the imports (torch, diffusers,
# torchmetrics) and the model load are paid once per model (docs/notes/performance.md, "Job start-up";
# benchmarks/bench_cell_jobs.py). A failed job reruns its model's cells.
for _name in PLAN:
    _plain = TARGETS.cell_patterns(_name, intervened_cells=False)
    _intervened = TARGETS.cell_patterns(_name, intervened_cells=True)

    if _plain:

        rule:
            name:
                f"sample_evaluate_{_name}"
            input:
                unpack(model_inputs),
            output:
                samples=cell_outputs(_plain, SAMPLES_OF),
                predictions=cell_outputs(_plain, f"{EVAL_OF}/predictions.parquet"),
                metrics=cell_outputs(_plain, f"{EVAL_OF}/metrics.parquet"),
                probe=PROBE,
            log:
                f"logs/sample_evaluate/{MODEL}.log",
            benchmark:
                benchmark_of(f"sample_evaluate_{_name}")
            wildcard_constraints:
                dataset=_name,
            group:
                "sample_eval"
            conda:
                ENV
            threads: config["resources"]["sample_threads"]
            resources:
                gpu=1,
                cpus_per_gpu=config["resources"]["sample_threads"],
                mem_mb=8000,
                runtime=60 + 20 * len(_plain),  # an hour + 20 min per cell
            params:
                cells=cells_params(_plain),
                metrics=config["metrics"],
                probe=config["probe"],
                grid=grid_params,
            script:
                "../scripts/sample_evaluate.py"

    if _intervened:

        rule:
            name:
                f"intervene_{_name}"
            input:
                unpack(model_inputs),
                sae=SAE_FILE,
                features=FEATURES,
                reference=twin_samples(_intervened),
            output:
                samples=cell_outputs(_intervened, SAMPLES_OF),
                predictions=cell_outputs(_intervened, f"{EVAL_OF}/predictions.parquet"),
                metrics=cell_outputs(_intervened, f"{EVAL_OF}/metrics.parquet"),
                same_seed=cell_outputs(_intervened, f"{EVAL_OF}/same_seed.parquet"),
            log:
                f"logs/intervene/{MODEL}.log",
            benchmark:
                benchmark_of(f"intervene_{_name}")
            wildcard_constraints:
                dataset=_name,
            group:
                "sample_eval"
            conda:
                ENV
            threads: config["resources"]["sample_threads"]
            resources:
                gpu=1,
                cpus_per_gpu=config["resources"]["sample_threads"],
                mem_mb=8000,
                runtime=60 + 20 * len(_intervened),
            params:
                cells=cells_params(_intervened),
                metrics=config["metrics"],
                difflens=lambda wc: {"target": list(family(wc).difflens["target"])},
            script:
                "../scripts/sample_evaluate.py"
