"""Config sections as frozen dataclasses: one reader for every ``<Section>Config.from_dict``.

A leaf module: the dataclasses that use it (``evaluation.cell.MetricsConfig``,
``evaluation.probe.ProbeConfig``) sit in higher layers, except the DiffLens sections (``SAEConfig``,
``LocateConfig``): the plan checks them when the Snakefile is parsed, and parsing must not import
torch (``biaslab.difflens.sae`` and ``biaslab.difflens.steps`` re-export them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_section(
    cls: type[T], d: Mapping[str, Any], section: str, *, int_tuples: Iterable[str] = ()
) -> T:
    """``cls(**d)`` for the config section ``section``: unknown keys are an error naming the
    section and the known keys (nothing is swallowed); the lists of ``int_tuples`` become
    tuples of int (the dataclasses are frozen and hashable)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{section}: unknown keys {unknown} (known: {sorted(known)})")
    d = dict(d)
    for name in int_tuples:
        if name in d:
            d[name] = tuple(int(v) for v in d[name])
    return cls(**d)


@dataclass(frozen=True)
class SAEConfig:
    """The ``difflens.sae`` section: expansion (latents = expansion x channels), k active
    latents per position, Adam lr with linear decay to 0, gradient clip, steps, batch."""

    expansion: int = 8
    k: int = 32
    lr: float = 1e-3
    steps: int = 2000
    batch_size: int = 1024
    grad_clip: float = 1.0
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SAEConfig:
        return from_section(cls, d, "difflens.sae")


@dataclass(frozen=True)
class LocateConfig:
    """The ``difflens.attribution`` section: integrated-gradient steps, the features kept per
    class, the share of capture samples held out to score the probes, the probes'
    inverse regularisation ``probe_c`` and the samples per class attributed."""

    ig_steps: int = 10
    n_features: int = 30
    probe_heldout: float = 0.25
    probe_c: float = 1.0
    samples_per_class: int = 100
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LocateConfig:
        return from_section(cls, d, "difflens.attribution")
