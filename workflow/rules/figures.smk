# One rule per figure drawn from one gathered table (biaslab.plan.figures.FIGURE_TABLE: the
# figure, its function, table, caption and category); the rules below draw the others.
for _fig in table_figures():

    rule:
        name:
            _fig.name
        input:
            _fig.table,
        output:
            png=report(
                figure(_fig.name, "png"),
                caption=f"../report/{_fig.caption}",
                category=_fig.category,
            ),
            pdf=figure(_fig.name, "pdf"),
        log:
            f"logs/figures/{_fig.name}.log",
        localrule: True
        conda:
            ENV
        resources:
            runtime=10,
        params:
            options=figure_options(_fig.name, config["figures"]),
        script:
            "../scripts/figure.py"


rule fig_difflens_gallery:
    input:
        activations=ACTIVATIONS,
        features=FEATURES,
    output:
        png=report(
            figure(GALLERY, "png"),
            caption="../report/difflens_gallery.rst",
            category="Mechanistic debiasing",
            labels={
                "figure": "feature gallery",
                "model": "{dataset} minority {fraction} depth {depth} seed {seed}",
            },
        ),
        pdf=figure(GALLERY, "pdf"),
    log:
        f"logs/figures/gallery/{MODEL}.log",
    conda:
        ENV
    resources:
        runtime=10,
    params:
        title=lambda wc: (
            f"{wc.dataset}, minority {wc.fraction}, depth {wc.depth}, seed {wc.seed}: "
            "images that most activate the top SAE features"
        ),
    script:
        "../scripts/fig_gallery.py"


# the same-seed grids of the depth family (absent when model.depths is empty)
if DEPTH is not None:

    localrules:
        fig5_same_seed,

    rule fig5_same_seed:
        input:
            samples=same_seed_files("results/samples", "samples.npz"),
            predictions=same_seed_files("results/eval", "predictions.parquet"),
        output:
            fig5_png=report(
                figure("fig5_same_seed/minority~{fraction}_seed~{seed}", "png"),
                caption="../report/fig5.rst",
                category="Same-seed samples",
                labels={
                    "figure": "Fig. 5: first seeds",
                    "minority fraction": "{fraction}",
                    "training seed": "{seed}",
                },
            ),
            fig5_pdf=figure("fig5_same_seed/minority~{fraction}_seed~{seed}", "pdf"),
            figA_png=report(
                figure("figA_minority_seeds/minority~{fraction}_seed~{seed}", "png"),
                caption="../report/figA.rst",
                category="Same-seed samples",
                labels={
                    "figure": "Fig. A: minority seeds",
                    "minority fraction": "{fraction}",
                    "training seed": "{seed}",
                },
            ),
            figA_pdf=figure(
                "figA_minority_seeds/minority~{fraction}_seed~{seed}", "pdf"
            ),
        log:
            "logs/figures/fig5/minority~{fraction}_seed~{seed}.log",
        conda:
            ENV
        resources:
            runtime=10,
        params:
            depths=DEPTH.depths,
            n=config["figures"]["grid_samples"],
            cell=TARGETS.same_seed_cell(),
            labels=same_seed_labels(DEPTH.data),
        script:
            "../scripts/fig_same_seed.py"


rule fig3_toy:
    output:
        png=report(
            figure("fig3_toy", "png"),
            caption="../report/fig3.rst",
            category="Toy (Fig. 3)",
        ),
        pdf=figure("fig3_toy", "pdf"),
        table="results/tables/fig3_toy.parquet",
    log:
        "logs/figures/fig3_toy.log",
    conda:
        ENV
    resources:
        runtime=10,
    script:
        "../scripts/fig3_toy.py"


rule tables:
    input:
        metrics="results/metrics.parquet",
        benchmarks=[file for file, _job in TARGETS.benchmark_jobs()],
    output:
        knn=report(
            "results/tables/table3_knn.csv",
            caption="../report/table3.rst",
            category="Memorization",
        ),
        summary=report(
            "results/tables/summary.md",
            caption="../report/summary.rst",
            category="Bias vs depth",
        ),
        jobs="results/tables/job_benchmarks.md",
        jobs_table="results/job_benchmarks.parquet",
    log:
        "logs/figures/tables.log",
    conda:
        ENV
    resources:
        runtime=10,
    params:
        jobs=[job for _file, job in TARGETS.benchmark_jobs()],
    script:
        "../scripts/tables.py"
