"""Paper Fig. 5 and Fig. A analogues: the same seeds decoded by every depth, with predicted
labels; Fig. 5 the first samples, Fig. A the seeds where the shallowest model generated the
minority (the blond men of CelebA). Columns whose label changes with depth are framed."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import matplotlib

matplotlib.use("Agg")
from biaslab.base.columns import depth_sort_key
from biaslab.base.io import load_npz, read_parquet, save_figure
from biaslab.figures import differing_columns, fig_same_seed_grid, minority_first_columns

depths = snakemake.params.depths
labels = snakemake.params.labels
n = snakemake.params.n
samples = {d: load_npz(p)["images"] for d, p in zip(depths, snakemake.input.samples, strict=True)}
preds = {
    d: read_parquet(p).sort_values("sample_index")[labels["column"]].to_numpy()
    for d, p in zip(depths, snakemake.input.predictions, strict=True)
}
names = {int(k): v for k, v in labels["names"].items()}
setting = (
    f"minority {snakemake.wildcards.fraction}, training seed {snakemake.wildcards.seed}, "
    f"{snakemake.params.cell}"
)
figures = {
    "fig5": (None, setting),
    "figA": (
        minority_first_columns(preds, labels["minority"], n),
        f"seeds where depth {min(depths, key=depth_sort_key)} generated "
        + "/".join(names[m] for m in labels["minority"])
        + f"; {setting}",
    ),
}
for key, (columns, title) in figures.items():
    fig = fig_same_seed_grid(samples, preds, names, n=n, title=title, columns=columns)
    shown = columns if columns is not None else range(min(n, min(map(len, preds.values()))))
    print(
        f"{key}: columns {list(shown)}, differing {differing_columns(preds, shown)}",
        file=sys.stderr,
    )
    out = snakemake.output
    save_figure(fig, [out[f"{key}_png"], out[f"{key}_pdf"]])
