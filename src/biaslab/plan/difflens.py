"""DiffLens settings of a run's families (``difflens`` section): which models get an SAE, the
sampler row whose loop is captured, the target distribution; checked before any job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from biaslab.base.columns import fraction_label, intervened, untreated
from biaslab.base.sections import LocateConfig, SAEConfig
from biaslab.models.unets import TABLE_A, scaled_channels
from biaslab.plan.checks import ConfigError


def _selected(dl: Mapping[str, Any], fam: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The depths and skew labels of ``fam`` that ``difflens.depths`` / ``.fractions`` pick.
    The filters span every family of ``difflens.datasets`` (a minority fraction of the depth
    family, a bias-conflicting share ``1 - rho`` of a conditional one): each family keeps the
    values it has and must keep one (``_check_filters`` checks that each value is used)."""
    depths = fam.depths
    if dl.get("depths") is not None:
        depths = tuple(d for d in (str(d) for d in dl["depths"]) if d in fam.depths)
        if not depths:
            raise ConfigError(
                f"difflens.depths: {list(dl['depths'])} select no depth of {fam.dataset} "
                f"({list(fam.depths)})"
            )
    fractions = fam.fractions
    if dl.get("fractions") is not None:
        wanted = [fraction_label(f) for f in dl["fractions"]]
        fractions = tuple(f for f in wanted if f in fam.fractions)
        if not fractions:
            share = "bias-conflicting shares 1 - rho" if fam.conditional else "minority fractions"
            raise ConfigError(
                f"difflens.fractions: {list(dl['fractions'])} select no model of {fam.dataset} "
                f"(its {share}: {list(fam.fractions)})"
            )
    return depths, fractions


def _check_filters(dl: Mapping[str, Any], fams: list[Any]) -> None:
    """Every value of ``difflens.depths`` / ``.fractions`` selects a model of some family."""
    for key, values, of in (
        ("depths", dl.get("depths"), lambda f: f.depths),
        ("fractions", dl.get("fractions"), lambda f: f.fractions),
    ):
        if values is None:
            continue
        have = {v for f in fams for v in of(f)}
        label = str if key == "depths" else fraction_label
        bad = [v for v in values if label(v) not in have]
        if bad:
            raise ConfigError(
                f"difflens.{key}: {bad} are not {key} of {[f.dataset for f in fams]} "
                f"({sorted(have)})"
            )


def _check_sizes(fam: Any, depths: tuple[str, ...], sae: Any, attribution: Any) -> None:
    """The SAE of each selected model has ``expansion x`` its mid-block channels latents:
    ``difflens.sae.k`` (active latents) and ``difflens.attribution.n_features`` (located
    features per class) must not exceed them. (``keep_calls`` beyond the sampler's network
    calls keeps every call: a documented clamp.)"""
    for depth in depths:
        mid = scaled_channels(TABLE_A[str(depth)].channels, fam.width)[-1]
        latents = int(sae.expansion) * int(mid)
        for key, value in (("sae.k", sae.k), ("attribution.n_features", attribution.n_features)):
            if int(value) > latents:
                raise ConfigError(
                    f"difflens.{key}: {value} exceeds the SAE's {latents} latents on the "
                    f"{fam.dataset} depth-{depth} model (difflens.sae.expansion {sae.expansion}"
                    f" x {mid} mid-block channels at width {fam.width})"
                )


def _plain_rows(fam: Any) -> list[dict[str, Any]]:
    """The rows without intervention; each intervened row must have its unintervened twin."""
    plain = [r for r in fam.knob_rows if not intervened(r)]
    for i, row in enumerate(fam.knob_rows):
        twin = untreated(row, "intervene")
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


def n_attribute_classes(fam: Any) -> int:
    """The attribute classes DiffLens probes, attributes and steers on a family: the depth
    family's two image classes (the evaluation classifier's); a conditional family's bias
    attribute, as its readout reads it: one background colour per class of coloured MNIST,
    BFFHQ's two genders."""
    if not fam.conditional:
        return 2
    if "bias" in fam.attribute_targets:  # BFFHQ: gender by the attribute classifier
        return 2
    return fam.num_classes


def _check_scale_rows(fam: Any, n_attr: int) -> None:
    """``intervene_mode: scale`` on a conditional family targets each class's
    bias-conflicting attribute, which is defined for two classes only."""
    if not fam.conditional or n_attr == 2:
        return
    for i, row in enumerate(fam.knob_rows):
        if intervened(row) and row["intervene_mode"] == "scale":
            raise ConfigError(
                f"{fam.grid_key}[{i}].intervene_mode: scale steers each class toward its "
                f"bias-conflicting attribute, defined for 2 classes; {fam.dataset} has "
                f"{n_attr}: use probability"
            )


def with_difflens(config: Mapping[str, Any], families: dict[str, Any]) -> dict[str, Any]:
    """The families of ``difflens.datasets`` with their DiffLens settings (``Family.difflens``);
    intervened grid rows anywhere else are an error, as are filters that select no model, an
    intervened row without its unintervened twin and a target distribution that is not one
    over the attribute classes."""
    dl = config.get("difflens") or {}
    names = list(dl.get("datasets") or [])
    for fam in families.values():
        # a grid shared by families (conditional.grid) intervenes on those with an SAE
        sharing = [n for n, f in families.items() if f.grid_key == fam.grid_key]
        for i, row in enumerate(fam.knob_rows):
            if intervened(row) and not set(sharing) & set(names):
                raise ConfigError(
                    f"{fam.grid_key}[{i}].intervene: the row intervenes through an SAE, but "
                    f"{' / '.join(sharing)} {'is' if len(sharing) == 1 else 'are'} not in "
                    "difflens.datasets"
                )
    out = dict(families)
    if config["model"]["depths"]:
        _check_filters(dl, [families[n] for n in names if n in families])
    else:  # the depth family is off, and its DiffLens (and filter values) with it
        names = [n for n in names if n != config["data"]["dataset"]]
    for name in names:
        fam = families.get(name)
        if fam is None:
            raise ConfigError(
                f"difflens.datasets: {name!r} is not a family of this run ({list(families)})"
            )
        depths, fractions = _selected(dl, fam)
        plain = _plain_rows(fam)
        n_attr = n_attribute_classes(fam)
        _check_scale_rows(fam, n_attr)
        try:
            sae = SAEConfig.from_dict(dl.get("sae") or {})
            attribution = LocateConfig.from_dict(dl.get("attribution") or {})
        except ValueError as e:
            raise ConfigError(str(e)) from None
        _check_sizes(fam, depths, sae, attribution)
        out[name] = replace(
            fam,
            difflens={
                "models": frozenset((f, d) for f in fractions for d in depths),
                "reference": plain[0],
                "n_samples": int(dl["n_samples"]),
                "keep_calls": int(dl["keep_calls"]),
                "target": _target(dl, n_attr, name),
                "n_attribute_classes": n_attr,
                # a conditional family's bias attribute (attributes.conditional_attribute)
                "conditional": (
                    {
                        "dataset": name,
                        "classes": list(fam.data.get("classes", range(fam.num_classes))),
                    }
                    if fam.conditional
                    else None
                ),
                "sae": asdict(sae),
                "attribution": asdict(attribution),
            },
        )
    return out
