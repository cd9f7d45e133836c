"""DiffLens settings of a run's families (``difflens`` section): which models get an SAE, the
sampler row whose loop is captured, the target distribution; checked before any job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from .config import ConfigError
from .difflens import LocateConfig, SAEConfig
from .grid import fraction_label, intervened


def _selected(dl: Mapping[str, Any], fam: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The depths and skew labels of ``fam`` that ``difflens.depths`` / ``.fractions`` pick."""
    depths = fam.depths if dl.get("depths") is None else tuple(str(d) for d in dl["depths"])
    bad = [d for d in depths if d not in fam.depths]
    if bad:
        raise ConfigError(
            f"difflens.depths: {bad} are not depths of {fam.dataset} ({list(fam.depths)})"
        )
    fractions = fam.fractions
    if dl.get("fractions") is not None:
        fractions = tuple(fraction_label(f) for f in dl["fractions"])
        bad = [f for f in fractions if f not in fam.fractions]
        if bad:
            raise ConfigError(
                f"difflens.fractions: {bad} are not skews of {fam.dataset} ({list(fam.fractions)})"
            )
    return depths, fractions


def _plain_rows(fam: Any) -> list[dict[str, Any]]:
    """The rows without intervention; each intervened row must have its unintervened twin."""
    plain = [r for r in fam.knob_rows if not intervened(r)]
    for i, row in enumerate(fam.knob_rows):
        twin = {**row, "intervene": 1.0, "intervene_mode": "none"}
        if intervened(row) and twin not in plain:
            raise ConfigError(
                f"{fam.grid_key}[{i}].intervene: no row with the same knobs and no "
                "intervention, the cell it is compared with (same seeds); add it"
            )
    if not plain:
        raise ConfigError(
            f"{fam.grid_key}: every row intervenes; DiffLens captures its activations on the "
            "first row without intervene"
        )
    return plain


def _target(dl: Mapping[str, Any], n_attr: int, name: str) -> tuple[float, ...]:
    target = dl.get("target")
    if target is None:
        target = [1.0 / n_attr] * n_attr
    if len(target) != n_attr or abs(sum(target) - 1.0) > 1e-6:
        raise ConfigError(
            f"difflens.target: {list(target)} is not a distribution over the {n_attr} "
            f"attribute classes of {name} (length {n_attr}, sum 1)"
        )
    return tuple(float(v) for v in target)


def with_difflens(config: Mapping[str, Any], families: dict[str, Any]) -> dict[str, Any]:
    """The families of ``difflens.datasets`` with their DiffLens settings (``Family.difflens``);
    intervened grid rows anywhere else are an error, as are filters that select no model, an
    intervened row without its unintervened twin and a target distribution that is not one
    over the attribute classes."""
    dl = config.get("difflens") or {}
    names = list(dl.get("datasets") or [])
    for name, fam in families.items():
        for i, row in enumerate(fam.knob_rows):
            if intervened(row) and name not in names:
                raise ConfigError(
                    f"{fam.grid_key}[{i}].intervene: the row intervenes through an SAE, but "
                    f"{name} is not in difflens.datasets"
                )
    out = dict(families)
    if not config["model"]["depths"]:  # the depth family is off, and its DiffLens with it
        names = [n for n in names if n != config["data"]["dataset"]]
    for name in names:
        fam = families.get(name)
        if fam is None:
            raise ConfigError(
                f"difflens.datasets: {name!r} is not a family of this run ({list(families)})"
            )
        if fam.conditional:
            raise ConfigError(
                f"difflens.datasets: {name} is class-conditional; DiffLens runs on the "
                "unconditional depth family in this version (its attribute: the class classifier's)"
            )
        depths, fractions = _selected(dl, fam)
        plain = _plain_rows(fam)
        n_attr = 2  # the depth family's attribute: the two image classes
        try:
            sae = SAEConfig.from_dict(dl.get("sae") or {})
            attribution = LocateConfig.from_dict(dl.get("attribution") or {})
        except ValueError as e:
            raise ConfigError(str(e)) from None
        out[name] = replace(
            fam,
            difflens={
                "models": frozenset((f, d) for f in fractions for d in depths),
                "reference": plain[0],
                "n_samples": int(dl["n_samples"]),
                "keep_calls": int(dl["keep_calls"]),
                "target": _target(dl, n_attr, name),
                "n_attribute_classes": n_attr,
                "sae": asdict(sae),
                "attribution": asdict(attribution),
            },
        )
    return out
