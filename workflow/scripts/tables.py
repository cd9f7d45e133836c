"""Table 3 analogue (kNN similarity by depth and k), a Markdown summary of the metrics, and the
cost of the model jobs per rule (from their ``benchmark:`` files)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from biaslab.base.io import atomic_path, read_parquet, write_parquet
from biaslab.figures import depth_family, knn_table, markdown_table
from biaslab.stats.gather import benchmark_summary, interval_note, job_benchmarks, summary_table

metrics = read_parquet(snakemake.input.metrics)
depth = depth_family(metrics)
# a run without the depth family (model.depths empty) has a Table 3 without rows
knn = knn_table(depth) if len(depth) else pd.DataFrame(columns=["minority_fraction", "depth"])
with atomic_path(snakemake.output.knn) as tmp:
    knn.to_csv(tmp, index=False)
with atomic_path(snakemake.output.summary) as tmp:
    tmp.write_text(markdown_table(summary_table(metrics)) + "\n\n" + interval_note(metrics) + "\n")
jobs = job_benchmarks(list(snakemake.input.benchmarks), snakemake.params.jobs)
write_parquet(jobs, snakemake.output.jobs_table)
with atomic_path(snakemake.output.jobs) as tmp:
    tmp.write_text(markdown_table(benchmark_summary(jobs), digits=1) + "\n")
