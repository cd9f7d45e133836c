"""Training-free toy of bias amplification by abstraction (paper Fig. 3).

Reproduces the intuition of Fig. 3 of "Deeper Diffusion Models Amplify Bias" (Hakemi et al.,
2025): a binary "class map" in which a fraction ``p`` of the cells belongs to the majority class is
repeatedly abstracted by 2x2 majority pooling (each block becomes its majority class, 2-2 ties are
broken by a fair coin). Nothing is trained.

What it shows
-------------
* With a skewed start (``p > 0.5``) the majority share *grows* with every abstraction level: a
  2x2 block is majority-labelled with probability ``p^4 + 4 p^3 (1-p) + 3 p^2 (1-p)^2`` (the last
  term is half of the ties), which exceeds ``p`` for ``p > 0.5``. Iterating drives the share
  towards 1, and faster the larger the initial skew -- the minority is washed out by abstraction,
  the analogue of deeper (more abstract) models amplifying the majority.
* The balanced case (``p = 0.5``) is a fixed point: the share stays 0.5 in expectation at every
  level (individual maps drift, and the final 1x1 map is a coin flip).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "abstraction_curve",
    "abstraction_pyramid",
    "example_pyramid",
    "majority_pool",
    "random_class_map",
]

DEFAULT_SHARES = (0.5, 0.6, 0.7, 0.8, 0.9)


def random_class_map(size: int, majority_share: float, rng: np.random.Generator) -> np.ndarray:
    """A ``size x size`` boolean map (True = majority class) with an exact majority count.

    Exactly ``round(majority_share * size**2)`` cells (Python's ``round``) are True, placed at
    uniformly random positions drawn from ``rng``.
    """
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not 0.0 <= majority_share <= 1.0:
        raise ValueError(f"majority_share must be in [0, 1], got {majority_share}")
    n_cells = size * size
    n_major = round(majority_share * n_cells)
    flat = np.zeros(n_cells, dtype=bool)
    flat[rng.choice(n_cells, size=n_major, replace=False)] = True
    return flat.reshape(size, size)


def majority_pool(class_map: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Halve each side of a boolean map by 2x2 majority pooling.

    Each non-overlapping 2x2 block becomes True if at least 3 of its 4 cells are True, False if at
    most 1 is, and a fair coin flip (drawn from ``rng``) on a 2-2 tie.
    """
    m = np.asarray(class_map, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"class_map must be 2-D, got shape {m.shape}")
    h, w = m.shape
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise ValueError(f"class_map sides must be even and >= 2, got shape {m.shape}")
    votes = m.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
    out = votes > 2
    ties = votes == 2
    n_ties = int(ties.sum())
    if n_ties:
        out[ties] = rng.random(n_ties) < 0.5
    return out


def _max_levels(size: int) -> int:
    """Number of halvings from ``size`` down to 1 (``size`` must be a power of two)."""
    if size < 1 or size & (size - 1):
        raise ValueError(f"size must be a power of two to pool down to 1x1, got {size}")
    return size.bit_length() - 1


def abstraction_pyramid(
    class_map: np.ndarray, rng: np.random.Generator, levels: int | None = None
) -> list[np.ndarray]:
    """``[map, pool(map), pool(pool(map)), ...]``: level 0 is the input itself.

    ``levels`` is the number of pooling steps; ``None`` pools down to 1x1 (square power-of-two
    maps only).
    """
    m = np.asarray(class_map, dtype=bool)
    if levels is None:
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"levels=None needs a square map, got shape {m.shape}")
        levels = _max_levels(m.shape[0])
    pyramid = [m]
    for _ in range(int(levels)):
        pyramid.append(majority_pool(pyramid[-1], rng))
    return pyramid


def abstraction_curve(
    size: int = 64,
    shares: tuple[float, ...] | list[float] = DEFAULT_SHARES,
    levels: int | None = None,
    n_maps: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Majority share after each abstraction level, for ``n_maps`` random maps per share.

    Paper Fig. 3 (toy): returns a tidy DataFrame with one row per (initial share, level, map):
    ``initial_share`` (configured share), ``level`` (0 = the original ``size x size`` map, then one
    row per 2x2 majority-pooling step, down to 1x1 when ``levels`` is None), ``map_size`` (side
    length at that level), ``map_index`` and ``majority_share`` (fraction of True cells).

    Each map uses its own generator spawned from ``np.random.SeedSequence(seed)``, so results are
    reproducible and independent of ``n_maps`` ordering.
    """
    size = int(size)
    max_levels = _max_levels(size)
    if levels is None:
        levels = max_levels
    if not 0 <= levels <= max_levels:
        raise ValueError(f"levels must be in [0, {max_levels}] for size {size}, got {levels}")
    if n_maps < 1:
        raise ValueError(f"n_maps must be >= 1, got {n_maps}")
    children = np.random.SeedSequence(seed).spawn(len(shares) * n_maps)
    rows: list[tuple[float, int, int, int, float]] = []
    for i, share in enumerate(shares):
        for j in range(n_maps):
            rng = np.random.default_rng(children[i * n_maps + j])
            pyramid = abstraction_pyramid(random_class_map(size, share, rng), rng, levels)
            for level, m in enumerate(pyramid):
                rows.append((float(share), level, m.shape[0], j, float(m.mean())))
    return pd.DataFrame(
        rows, columns=["initial_share", "level", "map_size", "map_index", "majority_share"]
    )


def example_pyramid(
    size: int = 64, majority_share: float = 0.7, seed: int = 0, levels: int | None = None
) -> list[np.ndarray]:
    """One random map and its successive poolings, for the example row of the toy figure."""
    rng = np.random.default_rng(seed)
    return abstraction_pyramid(random_class_map(size, majority_share, rng), rng, levels)
