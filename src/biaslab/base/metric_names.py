"""The names of the image-quality metrics, and the names tables published before them used.

Until issue 26 the Frechet distance and the kernel distance (KID) of generated images to
held-out real images, computed through torchmetrics in the evaluation classifier's
penultimate features (or the kNN backbone, named in the ``backbone`` column), were the rows
``fid``, ``kid`` and ``kid_std``. Those numbers are not comparable with published FIDs, so
they are now ``fid_classifier``, ``kid_classifier`` and ``kid_classifier_std``; ``fid`` is
kept for the standard FID only: torchmetrics' ``FrechetInceptionDistance`` with the FID
Inception weights (``metrics.fid_inception_weights``), its rows labelled with the backbone
``STANDARD_FID_BACKBONE``.

Tables published before the rename (``docs/results/*``) are records and are not rewritten;
code that reads them maps the old names on read (:func:`rename_legacy_metrics`,
:func:`rename_legacy_claims`). A leaf module: it imports nothing from biaslab.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: the classifier-feature (or kNN-backbone) FID / KID rows of ``evaluation.quality.quality_rows``
FID_CLASSIFIER, KID_CLASSIFIER, KID_CLASSIFIER_STD = (
    "fid_classifier",
    "kid_classifier",
    "kid_classifier_std",
)
#: the standard FID (FID Inception weights through torchmetrics) and its ``backbone`` label
STANDARD_FID, STANDARD_FID_BACKBONE = "fid", "fid_inception"
#: metric name in tables published before issue 26 -> its name now
LEGACY_METRIC_NAMES = {
    "fid": FID_CLASSIFIER,
    "kid": KID_CLASSIFIER,
    "kid_std": KID_CLASSIFIER_STD,
}


def rename_legacy_metrics(table):
    """``table`` (a metrics, contrasts or claims DataFrame with a ``metric`` column) with the
    pre-issue-26 names mapped (``LEGACY_METRIC_NAMES``). A ``fid`` row is the standard FID,
    and kept, when its ``backbone`` is ``STANDARD_FID_BACKBONE``; every other ``fid`` row
    (old tables: backbone ``classifier``, ``alex``, ...) is the classifier-feature FID. A copy;
    ``table`` itself is unchanged. A table without a ``metric`` column is returned as is."""
    if "metric" not in getattr(table, "columns", ()):
        return table
    out = table.copy()
    old = out["metric"].isin(list(LEGACY_METRIC_NAMES))
    if "backbone" in out.columns:
        old &= ~((out["metric"] == STANDARD_FID) & (out["backbone"] == STANDARD_FID_BACKBONE))
    out.loc[old, "metric"] = out.loc[old, "metric"].map(LEGACY_METRIC_NAMES)
    return out


def rename_legacy_claims(config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A config (parsed YAML) written before issue 26, with the claims that name ``fid`` /
    ``kid`` / ``kid_std`` renamed to the classifier-feature metrics they measured, and the ids
    of the claims changed. A config that sets ``metrics.fid_inception_weights`` is new (its
    ``fid`` is the standard FID) and only its ``kid`` / ``kid_std`` claims are renamed."""
    out = dict(config)
    standard = bool((config.get("metrics") or {}).get("fid_inception_weights"))
    changed, claims = [], []
    for claim in config.get("claims") or []:
        metric = claim.get("metric") if isinstance(claim, Mapping) else None
        if metric in LEGACY_METRIC_NAMES and not (standard and metric == STANDARD_FID):
            claim = {**claim, "metric": LEGACY_METRIC_NAMES[metric]}
            changed.append(str(claim.get("id")))
        claims.append(claim)
    if "claims" in config:
        out["claims"] = claims
    return out, changed
