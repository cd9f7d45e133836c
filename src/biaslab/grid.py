"""The grid columns carried by every tidy Parquet artifact.

Aggregation concatenates tables and groups by these columns; nothing parses paths.
"""

from __future__ import annotations

# Order matters only for display. ``rho_data`` / ``rho_right`` (nominal bias alignment of the
# training set) exist only for the coloured-MNIST datasets, where ``minority_fraction`` is the
# bias-conflicting share ``1 - rho_data``.
DATA_COLUMNS = ("dataset", "source", "resolution", "minority_fraction", "rho_data", "rho_right")
MODEL_COLUMNS = ("depth", "width", "train_seed", "train_steps", "num_classes")
#: The sampler knobs: each is a Paramspace axis (a path component) and a column everywhere.
KNOB_COLUMNS = ("sampler", "steps", "eta", "s_churn", "guidance", "bypass", "bypass_schedule")
#: Every knob's "off" value (eta's default depends on the sampler: ``config.DEFAULT_ETA``).
KNOB_DEFAULTS = {"s_churn": 0.0, "guidance": 0.0, "bypass": 0.0, "bypass_schedule": "constant"}
#: Sampler settings that are global per run (EDM stochasticity window and noise scale).
EDM_COLUMNS = ("s_min", "s_max", "s_noise")
SAMPLER_COLUMNS = KNOB_COLUMNS + EDM_COLUMNS + ("n_samples", "sample_seed")
GRID_COLUMNS = DATA_COLUMNS + MODEL_COLUMNS + SAMPLER_COLUMNS

# Depth variants of the paper's Table A, in display order.
DEPTH_ORDER = ("2", "2L", "3", "4", "5", "6")


def depth_sort_key(depth: str) -> int:
    """Position of a depth label in ``DEPTH_ORDER`` (unknown labels last)."""
    depth = str(depth)
    return DEPTH_ORDER.index(depth) if depth in DEPTH_ORDER else len(DEPTH_ORDER)


def is_stochastic(row) -> bool:
    """Whether a sampler setting injects fresh noise during sampling (ancestral DDPM,
    DDIM with eta > 0, EDM with S_churn > 0)."""
    sampler = str(row["sampler"])
    if sampler == "ddpm":
        return True
    return float(row.get("eta", 0.0) or 0.0) > 0 or float(row.get("s_churn", 0.0) or 0.0) > 0


def fraction_label(value: float) -> str:
    """The path label of a minority fraction: shortest float repr after rounding away
    floating-point noise (``1 - 0.99`` -> ``"0.01"``)."""
    return repr(round(float(value), 10))
