"""Every relative link and image in the README and docs/ resolves to a file tracked by git:
a clean clone is what users get."""

from __future__ import annotations

import posixpath
import re
import subprocess
from pathlib import PurePosixPath

import pytest

from tests.helpers import ROOT

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _tracked() -> set[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    files = set(out.splitlines())
    return files | {str(p) for f in files for p in PurePosixPath(f).parents}


def _documents() -> list[str]:
    docs = [f for f in _tracked() if f.endswith(".md")]
    return sorted(f for f in docs if f == "README.md" or f.startswith("docs/"))


def relative_links(text: str) -> list[str]:
    links = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        links.append(target.split("#")[0])
    return [t for t in links if t]


def test_link_parser():
    text = 'see [a](docs/x.md#part), ![img](fig.png "t"), [web](https://x.org), [s](#sec)'
    assert relative_links(text) == ["docs/x.md", "fig.png"]


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_readme_and_docs_links_resolve_to_tracked_files():
    tracked = _tracked()
    missing = []
    for doc in _documents():
        base = posixpath.dirname(doc)
        for target in relative_links((ROOT / doc).read_text()):
            path = posixpath.normpath(posixpath.join(base, target))
            if path not in tracked:
                missing.append(f"{doc}: {target}")
    assert not missing, missing


def test_gitignore_is_anchored_at_the_root():
    """``results/`` unanchored also hid docs/results/ (a published reproduction was lost)."""
    proc = subprocess.run(
        ["git", "check-ignore", "--no-index", "docs/results/x/fig.png", "results/metrics.parquet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.stdout.split() == ["results/metrics.parquet"]
