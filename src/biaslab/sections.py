"""Config sections as frozen dataclasses: one reader for every ``<Section>Config.from_dict``.

A leaf module: the dataclasses that use it (``evaluate.MetricsConfig``, ``probe.ProbeConfig``)
sit in higher layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
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
