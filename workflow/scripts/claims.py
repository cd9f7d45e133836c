"""Across-model aggregates, paired contrasts and the config's claim verdicts of a run
(``biaslab.stats.contrasts``), from the gathered metrics and predictions."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.base.io import atomic_path, read_parquet, write_parquet
from biaslab.stats.claims import between_pairs, claims_markdown, evaluate_claims, joint_sets
from biaslab.stats.contrasts import aggregate, contrasts

metrics = read_parquet(snakemake.input.metrics)
predictions = read_parquet(snakemake.input.predictions)
write_parquet(aggregate(metrics), snakemake.output.aggregate)
claims = list(snakemake.params.claims)
threshold = float(snakemake.params.confidence_threshold)
table = contrasts(
    metrics, predictions, threshold, joint=joint_sets(claims), between=between_pairs(claims)
)
write_parquet(table, snakemake.output.contrasts)
claims = evaluate_claims(table, claims, metrics)
write_parquet(claims, snakemake.output.claims)
with atomic_path(snakemake.output.table) as tmp:
    tmp.write_text(claims_markdown(claims))
