"""The grid columns carried by every tidy Parquet artifact.

Aggregation concatenates tables and groups by these columns; nothing parses paths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from biaslab.base.errors import ConfigError

# Order matters only for display. ``rho_data`` / ``rho_right`` (nominal bias alignment of the
# training set) exist only for the coloured-MNIST datasets, where ``minority_fraction`` is the
# bias-conflicting share ``1 - rho_data``.
DATA_COLUMNS = ("dataset", "source", "resolution", "minority_fraction", "rho_data", "rho_right")
#: ``objective`` (``biaslab.models.objectives``) and ``beta_schedule``: what the model was trained
#: on.
MODEL_COLUMNS = (
    "depth",
    "width",
    "train_seed",
    "train_steps",
    "objective",
    "beta_schedule",
    "num_classes",
)
#: The sampler knobs: each is a Paramspace axis (a path component) and a column everywhere.
KNOB_COLUMNS = (
    "sampler",
    "steps",
    "eta",
    "s_churn",
    "guidance",
    "bypass",
    "bypass_schedule",
    "timestep_spacing",
    "intervene",
    "intervene_mode",
)
#: The type of each knob (path components are strings; the tables hold these types).
KNOB_TYPES = {
    "sampler": str,
    "steps": int,
    "eta": float,
    "s_churn": float,
    "guidance": float,
    "bypass": float,
    "bypass_schedule": str,
    "timestep_spacing": str,
    "intervene": float,
    "intervene_mode": str,
}
#: Every knob's "off" value; a sampler's own defaults (``SamplerSpec.defaults``) come first.
#: ``timestep_spacing`` is "none" for the samplers without it (Karras sigmas).
KNOB_DEFAULTS = {
    "eta": 0.0,
    "s_churn": 0.0,
    "guidance": 0.0,
    "bypass": 0.0,
    "bypass_schedule": "constant",
    "timestep_spacing": "none",
    "intervene": 1.0,
    "intervene_mode": "none",
}
#: The mode of a row that sets ``intervene`` and leaves ``intervene_mode`` out.
INTERVENE_DEFAULT_MODE = "probability"
#: How diffusers places ``steps`` inference timesteps among the training timesteps (Lin et
#: al. 2024, Table 2): T = 1000, 10 steps: leading 900, 800, ..., 0; trailing 999, 899, ...,
#: 99; linspace 999, 888, ..., 0. Only trailing and linspace start at pure noise.
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
#: The values a string knob may take on a sampler that has it.
KNOB_CHOICES = {"timestep_spacing": TIMESTEP_SPACINGS}
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


def intervened(row: Mapping[str, Any]) -> bool:
    """Whether a grid row intervenes on the mid-block through the SAE
    (``biaslab.difflens.steps``)."""
    v = row.get("intervene", KNOB_DEFAULTS["intervene"])
    return is_given(v) and float(v) != 1.0


#: Each treatment knob's "off" values. A treated cell's twin is the same row with these: same
#: knobs, same sample seeds, no treatment; the treated cell's samples are compared with it.
UNTREATED = {
    "bypass": {"bypass": 0.0, "bypass_schedule": "constant"},
    "intervene": {"intervene": 1.0, "intervene_mode": "none"},
}


#: The mode a treated row takes when it names none (a treatment without an entry keeps its
#: "off" mode: a constant bypass).
TREATED_MODE = {"intervene": INTERVENE_DEFAULT_MODE}
#: How a default reads in the configuration reference where a table value cannot say it.
DEFAULT_TEXT = {
    "intervene_mode": f"`{INTERVENE_DEFAULT_MODE}` when `intervene` is set, else `none`"
}


def resolve_treatments(row: dict[str, Any], where: str) -> dict[str, Any]:
    """A typed grid row's treatment modes, checked and filled in place: a mode other than its
    "off" value needs its treatment on (``bypass_schedule`` without ``bypass``,
    ``intervene_mode`` without ``intervene``), and a treatment on without a mode takes
    ``TREATED_MODE``. Errors name ``where`` and the key."""
    for knob, off in UNTREATED.items():
        mode = next(k for k in off if k != knob)
        if row[knob] == off[knob] and row[mode] != off[mode]:
            raise ConfigError(
                f"{where}.{mode}: set without {knob} (it is off at {fmt_value(off[knob])})"
            )
        if row[knob] != off[knob] and row[mode] == off[mode] and knob in TREATED_MODE:
            row[mode] = TREATED_MODE[knob]
    return row


def treatment_labels(key: Mapping[str, Any]) -> list[str]:
    """How the treatments a row applies read in figure labels: ``bypass p=0.5 ramped``,
    ``SAE x4 probability`` (a missing or NaN value reads as off)."""
    parts = []
    bypass, ratio = key.get("bypass"), key.get("intervene")
    if is_given(bypass) and bypass != 0:
        ramp = " ramped" if key.get("bypass_schedule") == "linear" else ""
        parts.append(f"bypass p={fmt_value(bypass)}{ramp}")
    if is_given(ratio) and ratio != 1:
        parts.append(f"SAE x{fmt_value(ratio)} {key.get('intervene_mode', '')}".strip())
    return parts


def is_given(v: Any) -> bool:
    """A table value that is there: neither None nor NaN."""
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def untreated(row: Mapping[str, Any], knob: str) -> dict[str, Any]:
    """The twin of a grid row: ``row`` with treatment ``knob`` off (``UNTREATED``)."""
    return {**row, **UNTREATED[knob]}


def untreated_mask(table: Any, knobs: tuple[str, ...] = tuple(UNTREATED)) -> np.ndarray:
    """The rows of a tidy table sampled without the treatments ``knobs`` (all by default); a
    missing column or value reads as off."""
    keep = np.ones(len(table), dtype=bool)
    for knob in knobs:
        off = UNTREATED[knob][knob]
        if knob in table:
            keep &= table[knob].fillna(off).to_numpy() == off
    return keep


def fmt_value(value: Any) -> str:
    """A grid value as figures print it: floats in ``%g``, everything else as ``str``."""
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def path_number(value: float | int) -> str:
    """A number as a path component that reads back as the same number: the shortest repr,
    written out in plain decimals where repr would use an exponent (``1e-07`` ->
    ``"0.0000001"``, ``1e20`` -> ``"100000000000000000000.0"``), so it fits the wildcard
    patterns (``WILDCARD_PATTERNS``) and ``float(path_number(v)) == v``."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return str(int(value))
    text = repr(float(value))
    if "e" in text:
        text = format(Decimal(text), "f")
        text = text if "." in text else text + ".0"
    return text


def fraction_label(value: float) -> str:
    """The path label of a minority fraction: rounded to 10 decimals (``1 - 0.99`` ->
    ``"0.01"``), in plain decimals (``path_number``)."""
    return path_number(round(float(value), 10))


def knob_path_values(row: Mapping[str, Any]) -> dict[str, str]:
    """A resolved knob row as its path components (``KNOB_COLUMNS`` order)."""
    return {
        k: path_number(row[k]) if KNOB_TYPES[k] is not str else str(row[k]) for k in KNOB_COLUMNS
    }


def knob_frame(rows: Any) -> Any:
    """The knob rows as path values, one column per knob: the frame of the workflow's
    Paramspace (one path component and column per sampler knob)."""
    import pandas as pd

    return pd.DataFrame([knob_path_values(r) for r in rows], columns=list(KNOB_COLUMNS))


#: What each path wildcard may match (the workflow's ``wildcard_constraints``); every path
#: label the plan makes is checked against these before any job.
WILDCARD_PATTERNS = {
    "dataset": r"[A-Za-z0-9_]+",
    "fraction": r"0\.[0-9]+",
    "depth": r"2L|[2-6]",
    "seed": r"[0-9]+",
    "target": r"class|bias|group",
    "sampler": r"[a-z+]+",
    "steps": r"[0-9]+",
    "eta": r"[0-9.]+",
    "s_churn": r"[0-9.]+",
    "guidance": r"[0-9.]+",
    "bypass": r"[0-9.]+",
    "bypass_schedule": r"[a-z]+",
    "timestep_spacing": r"[a-z]+",
    "intervene": r"[0-9.]+",
    "intervene_mode": r"[a-z]+",
}
