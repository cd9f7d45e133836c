# The run's evidence across trained models (biaslab.stats.contrasts): per-cell aggregates over
# training seeds, paired contrasts between cells that differ in one knob, the config's claims.
rule claims:
    input:
        metrics="results/metrics.parquet",
        predictions="results/predictions.parquet",
    output:
        aggregate="results/aggregate.parquet",
        contrasts="results/contrasts.parquet",
        claims="results/claims.parquet",
        table=report(
            "results/tables/claims.md",
            caption="../report/claims.rst",
            category="Claims",
        ),
    log:
        "logs/claims.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        claims=config["claims"],
        confidence_threshold=config["metrics"]["confidence_threshold"],
    script:
        "../scripts/claims.py"
