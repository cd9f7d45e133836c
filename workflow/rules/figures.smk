rule fig4_minority_vs_depth:
    input:
        metrics="results/metrics.parquet",
    output:
        png=report(
            figure("fig4_minority_vs_depth", "png"),
            caption="../report/fig4.rst",
            category="Bias vs depth",
        ),
        pdf=figure("fig4_minority_vs_depth", "pdf"),
    log:
        "logs/figures/fig4.log",
    conda:
        ENV
    resources:
        runtime=10,
    params:
        options={"confident_share_min": config["figures"]["confident_share_min"]},
    script:
        "../scripts/figure.py"


rule fig_knn_vs_k:
    input:
        metrics="results/metrics.parquet",
    output:
        png=report(
            figure("fig_knn_vs_k", "png"),
            caption="../report/knn.rst",
            category="Memorization",
        ),
        pdf=figure("fig_knn_vs_k", "pdf"),
    log:
        "logs/figures/knn.log",
    conda:
        ENV
    resources:
        runtime=10,
    script:
        "../scripts/figure.py"


rule fig_probe:
    input:
        probe="results/probe.parquet",
    output:
        png=report(
            figure("fig_probe", "png"),
            caption="../report/probe.rst",
            category="What the model knows",
        ),
        pdf=figure("fig_probe", "pdf"),
    log:
        "logs/figures/probe.log",
    conda:
        ENV
    resources:
        runtime=10,
    script:
        "../scripts/figure.py"


rule fig_fd_vs_intervention:
    input:
        metrics="results/metrics.parquet",
    output:
        png=report(
            figure("fig_fd_vs_intervention", "png"),
            caption="../report/fd.rst",
            category="Mechanistic debiasing",
        ),
        pdf=figure("fig_fd_vs_intervention", "pdf"),
    log:
        "logs/figures/fd.log",
    conda:
        ENV
    resources:
        runtime=10,
    script:
        "../scripts/figure.py"


rule fig_difflens_probes:
    input:
        probes="results/difflens/probes.parquet",
    output:
        png=report(
            figure("fig_difflens_probes", "png"),
            caption="../report/difflens_probes.rst",
            category="Mechanistic debiasing",
        ),
        pdf=figure("fig_difflens_probes", "pdf"),
    log:
        "logs/figures/difflens_probes.log",
    conda:
        ENV
    resources:
        runtime=10,
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


rule fig_loss_curves:
    input:
        train_log="results/train_log.parquet",
    output:
        png=report(
            figure("fig_loss_curves", "png"),
            caption="../report/loss.rst",
            category="Training",
        ),
        pdf=figure("fig_loss_curves", "pdf"),
    log:
        "logs/figures/loss.log",
    conda:
        ENV
    resources:
        runtime=10,
    script:
        "../scripts/figure.py"


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
            cell=same_seed_cell(),
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
        benchmarks=[file for file, _job in benchmark_jobs()],
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
        jobs=[job for _file, job in benchmark_jobs()],
    script:
        "../scripts/tables.py"


rule fig_sampler_study:
    input:
        metrics="results/metrics.parquet",
    output:
        png=report(
            figure("fig_{kind}", "png"),
            caption="../report/sampler.rst",
            category="Sampler settings",
            labels={"figure": "{kind}"},
        ),
        pdf=figure("fig_{kind}", "pdf"),
    log:
        "logs/figures/{kind}.log",
    wildcard_constraints:
        kind="rho_vs_rho_data|rho_vs_steps|rho_vs_guidance|bypass|bias_diversity_frontier|bias_quality_frontier",
    conda:
        ENV
    resources:
        runtime=10,
    script:
        "../scripts/figure.py"
