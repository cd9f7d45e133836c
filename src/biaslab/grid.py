"""The grid columns carried by every tidy Parquet artifact.

Aggregation concatenates tables and groups by these columns; nothing parses paths.
"""

from __future__ import annotations

# Order matters only for display.
DATA_COLUMNS = ("dataset", "source", "resolution", "minority_fraction")
MODEL_COLUMNS = ("depth", "width", "train_seed", "train_steps")
SAMPLER_COLUMNS = ("sampler", "steps", "eta", "n_samples", "sample_seed")
GRID_COLUMNS = DATA_COLUMNS + MODEL_COLUMNS + SAMPLER_COLUMNS

# Depth variants of the paper's Table A, in display order.
DEPTH_ORDER = ("2", "2L", "3", "4", "5", "6")


def depth_sort_key(depth: str) -> int:
    """Position of a depth label in ``DEPTH_ORDER`` (unknown labels last)."""
    depth = str(depth)
    return DEPTH_ORDER.index(depth) if depth in DEPTH_ORDER else len(DEPTH_ORDER)
