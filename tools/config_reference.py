"""Write config/README.md, the configuration reference, from the JSON schema and the shipped
configs (``biaslab.plan.reference``). Run after changing the schema or a config's header:

    python tools/config_reference.py

tests/test_config_reference.py fails while the committed file is stale."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
OUT = ROOT / "config" / "README.md"


def summary(path: Path) -> str:
    """A config's first sentence: its leading comment block, up to the first full stop."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = re.sub(r"(?<=[a-z])- (?=[a-z])", "-", " ".join(lines))  # words split at a line end
    match = re.search(r"\.(\s+(?=[A-Z\"(])|$)", text)
    return text[: match.start() + 1] if match else text


def shipped_configs() -> dict[str, str]:
    files = [ROOT / "config.yaml", *sorted((ROOT / "config").glob("*.yaml"))]
    return {str(f.relative_to(ROOT)): summary(f) for f in files}


def reference() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from biaslab.plan.reference import render

    return render(yaml.safe_load(SCHEMA.read_text()), shipped_configs())


if __name__ == "__main__":
    OUT.write_text(reference())
    print(f"wrote {OUT.relative_to(ROOT)}")
