"""Paper Figs. 5 and A ("Deeper Diffusion Models Amplify Bias"): the same sampling seeds
decoded by models of increasing depth, with predicted labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from biaslab.base.columns import depth_sort_key

__all__ = ["differing_columns", "fig_same_seed_grid", "minority_first_columns"]


def _as_image(x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(image, cmap) for imshow from [H, W], [C, H, W] or [H, W, C] uint8."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x, "gray"
    if x.ndim == 3:
        if x.shape[0] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
            x = np.moveaxis(x, 0, -1)
        if x.shape[-1] == 1:
            return x[..., 0], "gray"
        return x, None
    raise ValueError(f"cannot display a sample of shape {x.shape}")


def differing_columns(predictions: Mapping[str, np.ndarray], columns: Sequence[int]) -> list[int]:
    """The sample indices among ``columns`` whose predicted label is not the same at every
    depth (the highlighted pairs of paper Fig. 5)."""
    out = []
    for c in columns:
        labels = {int(p[c]) for p in predictions.values() if c < len(p)}
        if len(labels) > 1:
            out.append(int(c))
    return out


def minority_first_columns(
    predictions: Mapping[str, np.ndarray], minority: Sequence[int], n: int
) -> list[int]:
    """Paper Fig. A: the first ``n`` sample indices where the shallowest depth generated a
    minority label (``minority``: the minority group, say "blond male"), to show what the
    deeper models make of the same seeds; topped up with the following indices when fewer
    exist."""
    if not predictions:
        raise ValueError("predictions is empty")
    shallow = predictions[min(predictions, key=lambda d: (depth_sort_key(str(d)), str(d)))]
    hits = np.flatnonzero(np.isin(shallow, list(minority)))[:n].tolist()
    rest = [i for i in range(len(shallow)) if i not in set(hits)]
    return [int(i) for i in hits + rest[: max(0, n - len(hits))]]


def _draw_tile(ax, sample: np.ndarray, label: str | None, framed: bool) -> None:
    """One sample, framed in red when its label changes with depth, its label bottom left."""
    img, cmap = _as_image(sample)
    if cmap is None:
        ax.imshow(img, interpolation="nearest")
    else:
        ax.imshow(img, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(framed)
        spine.set_color("red")
        spine.set_linewidth(2.5)
    if label is not None:
        ax.text(
            0.03,
            0.03,
            label,
            transform=ax.transAxes,
            fontsize=7,
            color="white",
            va="bottom",
            ha="left",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0},
        )


def fig_same_seed_grid(
    samples: Mapping[str, np.ndarray],
    predictions: Mapping[str, np.ndarray] | None = None,
    class_names: Mapping[int, str] | None = None,
    n: int = 10,
    title: str | None = None,
    columns: Sequence[int] | None = None,
) -> Figure:
    """Paper Fig. 5: the same sampling seeds decoded by models of increasing depth.

    ``samples`` maps a depth label to a uint8 array ``[N, H, W]`` or ``[N, C, H, W]`` whose i-th
    sample was drawn from the same initial noise for every depth. Rows are depths (ordered by
    ``depth_sort_key``, labelled "depth 4"), columns the sample indices ``columns`` (default:
    the first ``n``; headed "seed i"); each tile is annotated with its predicted label
    (``class_names[pred]`` when given), and the columns whose label differs between depths
    are framed in red. Paper Fig. A: ``columns=minority_first_columns(...)``.
    """
    if not samples:
        raise ValueError("samples is empty")
    depths = sorted(samples, key=lambda d: (depth_sort_key(str(d)), str(d)))
    n_avail = min(len(samples[d]) for d in depths)
    cols = list(range(min(int(n), n_avail))) if columns is None else [int(c) for c in columns]
    if not cols:
        raise ValueError("need at least one sample per depth")
    if max(cols) >= n_avail:
        raise ValueError(f"column {max(cols)} is beyond the {n_avail} samples per depth")
    differ = set(differing_columns(predictions, cols)) if predictions else set()
    fig, axes = plt.subplots(
        len(depths),
        len(cols),
        figsize=(1.25 * len(cols) + 0.6, 1.35 * len(depths) + 0.4),
        squeeze=False,
    )
    for r, d in enumerate(depths):
        preds = None if predictions is None else predictions.get(d)
        for j, c in enumerate(cols):
            ax = axes[r, j]
            label = None
            if preds is not None and c < len(preds):
                p = preds[c]
                label = class_names.get(int(p), str(p)) if class_names else str(p)
            _draw_tile(ax, samples[d][c], label, c in differ)
            if r == 0:
                ax.set_title(f"seed {c}", fontsize=8, color="red" if c in differ else "black")
            if j == 0:
                ax.set_ylabel(f"depth {d}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
