"""The configuration reference, ``config/README.md``, rendered from the JSON schema.

The schema (``workflow/schemas/config.schema.yaml``) is the one place where a key's type,
default and meaning are written; this module only renders it: one table per top-level
section, nested objects flattened to dotted keys, arrays of objects (claims, pretrained models,
sampler rows) as tables of their own. Two annotations beside the standard keywords:
``x-required`` (a key required by one kind of item, e.g. a contrast claim's ``vary``) and
``x-default: sampler registry`` (a sampler knob whose default is the sampler's, read here from
``biaslab.sampling.registry.SAMPLERS``). ``keys`` is what the test walks to check that every key has
a description and a default (or is required).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from biaslab.base.columns import DEFAULT_TEXT, KNOB_DEFAULTS
from biaslab.sampling.registry import SAMPLERS

SAMPLER_ROWS = "sampler_grid"


@dataclass(frozen=True)
class Key:
    """One schema key: its dotted path (``[]`` for an array's items), its schema node and
    whether its parent object requires it."""

    path: str
    node: Mapping[str, Any]
    required: bool

    @property
    def documented(self) -> bool:
        return "description" in self.node

    @property
    def has_default(self) -> bool:
        return self.required or any(k in self.node for k in ("default", "x-default", "x-required"))


def keys(node: Mapping[str, Any], prefix: str = "") -> Iterator[Key]:
    """Every key below ``node``, depth first, in the schema's order; the items of an array of
    objects under ``<path>[]``; a ``$ref`` is not followed (the sampler rows are one table)."""
    required = set(node.get("required", ()))
    for name, child in (node.get("properties") or {}).items():
        path = f"{prefix}{name}"
        yield Key(path, child, name in required)
        yield from keys(child, f"{path}.")
        items = child.get("items")
        if isinstance(items, Mapping) and items.get("properties"):
            yield from keys(items, f"{path}[].")


def _type(node: Mapping[str, Any]) -> str:
    if "$ref" in node:
        return "list of sampler rows"
    kind = node.get("type")
    if kind is None and "oneOf" in node:
        kind = sorted({t for o in node["oneOf"] for t in _as_list(o.get("type"))})
    text = " or ".join(_as_list(kind)) if kind else "any"
    if "enum" in node:
        text += ": " + ", ".join(f"`{v}`" for v in node["enum"] if v is not None)
    items = node.get("items")
    if isinstance(items, Mapping) and "enum" in items:
        text += " of " + ", ".join(f"`{v}`" for v in items["enum"])
    bounds = [
        f"{sym} {node[k]}"
        for k, sym in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        if k in node and node[k] != 9223372036854775807
    ]
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _as_list(v: Any) -> list[Any]:
    return [] if v is None else list(v) if isinstance(v, list) else [v]


def knob_default(knob: str) -> str:
    """A sampler knob's default as the registry gives it: per sampler where they differ."""
    if knob in DEFAULT_TEXT:
        return DEFAULT_TEXT[knob]
    having = {n: s.default(knob) for n, s in SAMPLERS.items() if knob in s.knobs}
    if not having or len(set(map(str, having.values()))) == 1:
        value = next(iter(having.values())) if having else KNOB_DEFAULTS[knob]
        only = f" ({', '.join(having)} only)" if having and len(having) < len(SAMPLERS) else ""
        return f"`{_json(value)}`{only}"
    return ", ".join(f"{n} `{_json(v)}`" for n, v in having.items())


def _json(v: Any) -> str:
    return json.dumps(v, separators=(", ", ": "))


def _default(key: Key) -> str:
    node = key.node
    if key.required:
        return "**required**"
    if "x-required" in node:
        return f"required for {node['x-required']}"
    if "x-default" in node:
        return knob_default(key.path.rsplit(".", 1)[-1])
    if "default" in node:
        return f"`{_json(node['default'])}`"
    return ""


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(rows: list[Key], strip: str) -> list[str]:
    out = ["| key | type | default | description |", "|:--|:--|:--|:--|"]
    for k in rows:
        out.append(
            f"| `{k.path.removeprefix(strip)}` | {_cell(_type(k.node))} | {_cell(_default(k))} "
            f"| {_cell(k.node.get('description', ''))} |"
        )
    return out


def render(schema: Mapping[str, Any], configs: Mapping[str, str]) -> str:
    """``config/README.md``: the shipped configs (``configs``: file name -> its first comment
    line), then one section per top-level key, then the sampler rows."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from workflow/schemas/config.schema.yaml by "
        "`python tools/config_reference.py`; do not edit (tests/test_config_reference.py). -->",
        "",
        _cell(schema.get("description", "")),
        "",
        "A run reads `config.yaml` (the default) or the file given with `--configfile`; every "
        "key below may be left out and takes its default.",
        "",
        "## Shipped configs",
        "",
        "| file | what it runs |",
        "|:--|:--|",
        *(f"| `{name}` | {_cell(line)} |" for name, line in configs.items()),
    ]
    for name, node in schema["properties"].items():
        out += ["", f"## `{name}`", ""]
        below = [k for k in keys(node, f"{name}.") if "[]" not in k.path]
        rows = below or [Key(name, node, False)]
        if below and node.get("description"):
            out += [_cell(node["description"]), ""]
        out += _table(rows, f"{name}." if below else "")
        for k in rows:
            items = k.node.get("items")
            if isinstance(items, Mapping) and items.get("properties"):
                out += ["", f"Each item of `{k.path}`:", ""]
                out += _table(list(keys(items, f"{k.path}[].")), f"{k.path}[].")
    rows = schema["$defs"][SAMPLER_ROWS]
    out += ["", "## Sampler rows", "", _cell(rows.get("description", "")), ""]
    out += _table(list(keys(rows["items"], "")), "")
    return "\n".join(out) + "\n"
