"""Mechanistic debiasing (DiffLens, arXiv 2503.20483) on the U-Net mid-block ("h-space").

Four steps, each one rule of the workflow and one function here:

1. ``capture_activations``: the mid-block output h of every network call of a full sampling
   loop (the family's reference sampler cell), at a configured number of evenly spaced calls,
   with the final images (the attribute labels come from the evaluation classifier).
2. ``TopKSAE`` / ``train_sae`` (``biaslab.difflens.sae``): a top-k sparse autoencoder on the h
   vectors (every spatial position a vector over channels), as DiffLens adapted it from EleutherAI's
   sparsify.
3. ``locate_features``: one linear probe per kept timestep on the flattened h (scikit-learn
   logistic regression, labels = the attribute of the final image), then integrated gradients
   (``captum``, zero baseline) of the probe's probability of the sample's own attribute class
   with respect to the SAE latents, decoded through the SAE; scores summed over timesteps,
   positions and the samples of each class; the top features per class.
4. ``sae_intervention``: ``h <- h + W_dec^T (z' - z)`` with ``z = Enc(h)`` and ``z'`` = z with
   the target class's features multiplied by ``ratio`` (only the difference is decoded, so
   the SAE's reconstruction error stays in h), at every network call but the first of a
   trajectory. Modes: ``scale`` (every sample's target is the minority class, index 1; for a
   two-class conditional model the bias-conflicting attribute of the sample's class),
   ``probability`` (each sample draws its target class from the target distribution, default
   uniform, with its own seed, so that a fully steered model would generate that
   distribution). ``ratio = 1`` installs nothing: samples are bit-identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from biaslab.base.sections import LocateConfig
from biaslab.difflens.sae import (  # noqa: F401  (the SAE's names are DiffLens' too)
    SAEConfig,
    TopKSAE,
    fingerprint,
    fvu,
    load_sae,
    positions,
    sae_vectors,
    save_sae,
    train_sae,
)
from biaslab.evaluation.attributes import attribute_labels, capture_labels  # noqa: F401  (DiffLens' labels)

#: The intervention modes (the ``intervene_mode`` knob; "none" = the knob is off).
INTERVENE_MODES = ("scale", "probability")


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# 1. activation capture
# --------------------------------------------------------------------------------------------


def kept_calls(n_calls: int, keep: int) -> np.ndarray:
    """Indices of ``keep`` evenly spaced network calls among ``n_calls`` (first and last
    included; all of them when ``keep >= n_calls``)."""
    if n_calls < 1 or keep < 1:
        raise ValueError(f"kept_calls: n_calls {n_calls} and keep {keep} must be positive")
    if keep >= n_calls:
        return np.arange(n_calls)
    return np.unique(np.round(np.linspace(0, n_calls - 1, keep)).astype(np.int64))


class MidBlockRecorder:
    """Forward hooks that record the mid-block output at chosen network calls of each batch.

    ``begin_batch(indices)`` starts a batch of the samples ``indices`` (its first
    ``len(indices)`` rows of the network's batch are kept: the conditional half under
    classifier-free guidance); the ``i``-th network call of the batch is kept when ``i`` is in
    ``calls``. ``result()`` gives h as float16
    [N, len(calls), C, H, W] and the DDPM timestep of each kept call."""

    def __init__(self, unet: nn.Module, calls: Sequence[int]):
        if getattr(unet, "mid_block", None) is None:
            raise ValueError("collect_activations: the U-Net has no mid_block")
        self.unet, self.calls = unet, [int(c) for c in calls]
        self.batches: list[list[torch.Tensor]] = []
        self.timesteps: list[float] = []
        self._t: torch.Tensor | None = None
        self._n = 0
        self._i = 0

    def begin_batch(self, indices: np.ndarray) -> None:
        self._n, self._i = len(indices), 0
        self.batches.append([])

    def _pre(self, _module, args, kwargs):
        t = kwargs["timestep"] if "timestep" in kwargs else args[1]
        self._t = torch.as_tensor(t).reshape(-1)[:1].float()

    def _post(self, _module, _args, output):
        if self._i in self.calls:
            self.batches[-1].append(output[: self._n].detach().to("cpu", torch.float16))
            if len(self.batches) == 1:
                self.timesteps.append(float(self._t[0]) if self._t is not None else np.nan)
        self._i += 1

    @contextlib.contextmanager
    def attached(self) -> Iterator[MidBlockRecorder]:
        handles = [
            self.unet.register_forward_pre_hook(self._pre, with_kwargs=True),
            self.unet.mid_block.register_forward_hook(self._post),
        ]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        for b in self.batches:
            if len(b) != len(self.calls):
                raise RuntimeError(
                    f"collect_activations: a batch made {len(b)} of the {len(self.calls)} kept "
                    "network calls (the sampler's evaluations per step differ from the plan)"
                )
        h = torch.cat([torch.stack(b, dim=1) for b in self.batches])
        return h.numpy(), np.asarray(self.timesteps, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# 3. attribution
# --------------------------------------------------------------------------------------------


def fit_probes(
    h: np.ndarray, labels: np.ndarray, n_classes: int, cfg: LocateConfig
) -> tuple[list[nn.Linear], list[dict[str, Any]]]:
    """One logistic-regression probe per kept call on the flattened h [N, S, C, H, W] (fit on
    ``1 - probe_heldout`` of the samples, accuracy on the rest), as a torch ``Linear``
    producing ``n_classes`` logits (for two classes, logits ``[0, w.h + b]``)."""
    from sklearn.linear_model import LogisticRegression

    n, s = h.shape[:2]
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError(
            f"locate_features: the captured samples all have attribute class {present.tolist()}; "
            "a probe needs both (raise difflens.n_samples)"
        )
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(n)
    n_out = round(n * cfg.probe_heldout)
    test, fit = order[:n_out], order[n_out:]
    probes, rows = [], []
    for j in range(s):
        x = h[:, j].reshape(n, -1).astype(np.float32)
        clf = LogisticRegression(C=cfg.probe_c, max_iter=2000)
        clf.fit(x[fit], labels[fit])
        lin = nn.Linear(x.shape[1], n_classes)
        with torch.no_grad():
            lin.weight.zero_()
            lin.bias.zero_()
            coef, icpt = torch.as_tensor(clf.coef_).float(), torch.as_tensor(clf.intercept_).float()
            cls = torch.as_tensor(clf.classes_)
            if len(cls) == 2:  # sklearn's binary form: one row for the second class
                lin.weight[cls[1]] = coef[0]
                lin.bias[cls[1]] = icpt[0]
            else:
                lin.weight[cls] = coef
                lin.bias[cls] = icpt
        acc = float(np.mean(clf.predict(x[test]) == labels[test])) if n_out else np.nan
        rows.append({"call": j, "probe_accuracy": acc, "n_fit": len(fit), "n_test": n_out})
        probes.append(lin.eval())
    return probes, rows


def attribute_features(
    sae: TopKSAE,
    probes: Sequence[nn.Linear],
    h: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    cfg: LocateConfig,
) -> tuple[np.ndarray, list[float]]:
    """Integrated-gradient scores [n_classes, n_latents]: for each kept call and each sample
    (up to ``samples_per_class`` per class), IG (captum, zero baseline, ``ig_steps``) of the
    probe's probability of the sample's class with respect to its SAE latents at every
    position, decoded through the SAE; summed over positions, samples and calls. Also the
    largest |convergence delta| of each call."""
    from captum.attr import IntegratedGradients

    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(cfg.seed)
    chosen = []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(idx)[: cfg.samples_per_class])
    chosen = np.concatenate(chosen)
    scores = torch.zeros(n_classes, sae.n_latents, dtype=torch.float64)
    deltas = []
    shape = h.shape[2:]
    for j, probe in enumerate(probes):
        vec = positions(h[chosen, j])  # [B, P, C]
        with torch.no_grad():
            z = sae.encode(vec)

        def prob(zz: torch.Tensor, target: torch.Tensor, _probe=probe) -> torch.Tensor:
            hh = sae.decode(zz).transpose(-1, -2).reshape(zz.shape[0], *shape)
            p = F.softmax(_probe(hh.flatten(1)), dim=1)
            return p.gather(1, target.view(-1, 1)).squeeze(1)

        target = torch.as_tensor(labels[chosen])
        ig = IntegratedGradients(prob)
        attr, delta = ig.attribute(
            z,
            baselines=torch.zeros_like(z),
            additional_forward_args=(target,),
            n_steps=cfg.ig_steps,
            return_convergence_delta=True,
        )
        deltas.append(float(delta.abs().max()))
        per_sample = attr.sum(1).double()  # [B, m]
        scores.index_add_(0, target, per_sample)
    return scores.numpy(), deltas


def top_features(scores: np.ndarray, n_features: int) -> np.ndarray:
    """The ``n_features`` latents of highest positive score per class [n_classes, n]
    (fewer when fewer are positive: padded with -1)."""
    out = np.full((scores.shape[0], n_features), -1, dtype=np.int64)
    for c, row in enumerate(scores):
        order = np.argsort(-row, kind="stable")
        keep = order[row[order] > 0][:n_features]
        out[c, : len(keep)] = keep
    return out


# --------------------------------------------------------------------------------------------
# 4. intervention
# --------------------------------------------------------------------------------------------


def target_classes(
    seeds: np.ndarray,
    mode: str,
    distribution: Sequence[float],
    minority: int = 1,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Each sample's target attribute class: ``minority`` for every sample (``scale``), or a
    draw from ``distribution`` with the sample's own seed (``probability``). For a
    class-conditional model (``labels``: each sample's conditioning class index, whose aligned
    attribute is the one of the same index), ``scale`` targets the bias-conflicting attribute
    of the sample's class, which needs two classes."""
    if mode == "scale":
        if labels is None:
            return np.full(len(seeds), int(minority), dtype=np.int64)
        if len(distribution) != 2:
            raise ValueError(
                f"intervene_mode scale: a class-conditional model's bias-conflicting attribute "
                f"is defined for 2 classes, not {len(distribution)}; use probability"
            )
        return 1 - np.asarray(labels, dtype=np.int64)
    if mode != "probability":
        raise ValueError(f"intervene_mode: {mode!r} is not one of {INTERVENE_MODES}")
    q = np.asarray(distribution, dtype=np.float64)
    cdf = np.cumsum(q)
    u = np.array([np.random.default_rng([int(s), 0x1D1F]).random() for s in seeds])
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(q) - 1)


class SAEIntervention:
    """``h <- h + W_dec^T (z' - z)`` on the mid-block output, per sample toward its target
    class (``target_classes``), at every network call of a batch but the first.

    ``features`` [n_classes, n] latent indices (-1 = none); ``targets`` [N] the target class of
    each sample; generation calls ``begin_batch(indices)`` before each batch of samples (rows
    of a guided, doubled batch reuse the targets of the first half)."""

    intervenes = True  # ``sampling.generate`` checks the cell's intervene knob against it

    def __init__(
        self,
        unet: nn.Module,
        sae: TopKSAE,
        features: np.ndarray,
        ratio: float,
        targets: np.ndarray,
    ):
        if getattr(unet, "mid_block", None) is None:
            raise ValueError("intervene: the U-Net has no mid_block to intervene on")
        if ratio < 0:
            raise ValueError(f"intervene: ratio {ratio} is negative")
        self.unet, self.sae, self.ratio = unet, sae, float(ratio)
        feats = np.asarray(features, dtype=np.int64)
        mask = torch.zeros(feats.shape[0], sae.n_latents)
        for c, row in enumerate(feats):
            row = row[row >= 0]
            mask[c, torch.as_tensor(row)] = 1.0
        self.mask = mask  # [n_classes, m]
        self.targets = np.asarray(targets, dtype=np.int64)
        if self.targets.size and (self.targets.min() < 0 or self.targets.max() >= len(feats)):
            raise ValueError(f"intervene: target classes outside [0, {len(feats)})")
        self._targets: torch.Tensor | None = None
        self._call = 0

    def begin_batch(self, indices: np.ndarray) -> None:
        self._targets = torch.as_tensor(self.targets[np.asarray(indices, dtype=np.int64)])
        self._call = 0

    def _post(self, _module, _args, output: torch.Tensor) -> torch.Tensor | None:
        call, self._call = self._call, self._call + 1
        if call == 0 or self._targets is None:  # the first step is left alone (DiffLens)
            return None
        b, c, hh, ww = output.shape
        reps = b // len(self._targets)
        scale = self.mask[self._targets.repeat(reps)].to(output.device)  # [b, m]
        vec = output.float().flatten(2).transpose(1, 2)  # [b, P, C]
        sae = self.sae.to(output.device)
        with torch.no_grad():
            z = sae.encode(vec)
            dz = z * scale[:, None, :] * (self.ratio - 1.0)
            delta = (dz @ sae.W_dec).transpose(1, 2).reshape(b, c, hh, ww)
        return output + delta.to(output.dtype)

    @contextlib.contextmanager
    def attached(self) -> Iterator[SAEIntervention]:
        if self.ratio == 1.0:  # off: nothing is installed, samples are bit-identical
            yield self
            return
        handle = self.unet.mid_block.register_forward_hook(self._post)
        try:
            yield self
        finally:
            handle.remove()


def check_features_file(
    blob: Mapping[str, Any], *, model_fingerprint: str, n_classes: int, path: str
) -> None:
    """A features file must come from this model and rank the classifier's classes."""
    if blob["model_fingerprint"] != model_fingerprint:
        raise ValueError(
            f"{path}: the features were located on another model (fingerprint "
            f"{blob['model_fingerprint']}, the model's is {model_fingerprint}); rerun "
            "locate_features"
        )
    if len(blob["features"]) != n_classes:
        raise ValueError(
            f"{path}: features for {len(blob['features'])} attribute classes, but the "
            f"attribute classifier has {n_classes}"
        )


# --------------------------------------------------------------------------------------------
# the steps as the workflow runs them
# --------------------------------------------------------------------------------------------


def collect_activations(
    unet: nn.Module, scheduler_config: dict, cfg, keep: int
) -> dict[str, np.ndarray]:
    """Sample ``cfg`` (a ``sampling.generate.SamplerConfig``) and record h at ``keep`` evenly spaced
    network calls of each trajectory: ``h`` float16 [N, S, C, H, W], the DDPM ``timesteps``
    and indices ``calls`` of the kept calls, the ``images`` and their ``seeds``."""
    from biaslab.sampling.generate import generate
    from biaslab.sampling.registry import sampler_spec

    n_calls = sampler_spec(cfg.sampler).evals_per_step(int(cfg.steps))
    calls = kept_calls(n_calls, keep)
    recorder = MidBlockRecorder(unet, calls)
    images, seeds = generate(unet, scheduler_config, cfg, hooks=[recorder], progress=False)
    h, timesteps = recorder.result()
    return {"h": h, "timesteps": timesteps, "calls": calls, "images": images, "seeds": seeds}


def feature_activity(
    h: np.ndarray, sae: TopKSAE, latents: np.ndarray, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """For each captured image, each of ``latents``' total activation (summed over the kept
    calls and positions: its activation mass) and its peak: two [N, len(latents)] arrays."""
    latents = torch.as_tensor(np.asarray(latents, dtype=np.int64))
    mass = np.zeros((len(h), len(latents)))
    peak = np.zeros((len(h), len(latents)))
    with torch.no_grad():
        for s in range(0, len(h), batch):
            z = sae.encode(positions(h[s : s + batch]))[..., latents]  # [b, S, P, L]
            mass[s : s + batch] = z.sum(dim=(1, 2)).double().numpy()
            peak[s : s + batch] = z.amax(dim=(1, 2)).double().numpy()
    return mass, peak


def gallery(
    h: np.ndarray, sae: TopKSAE, features: np.ndarray, n_features: int = 5, n_images: int = 8
) -> np.ndarray:
    """For the first ``n_features`` located features of each class, the captured images that
    activate it most (its largest activation over calls and positions), most first:
    [n_classes, n_features, n_images] image indices (-1 where a feature has no feature id or
    fewer active images)."""
    feats = np.asarray(features)[:, :n_features]
    flat = np.unique(feats[feats >= 0])
    _mass, peak = feature_activity(h, sae, flat)
    out = np.full((*feats.shape, n_images), -1, dtype=np.int64)
    for (c, r), f in np.ndenumerate(feats):
        if f < 0:
            continue
        col = peak[:, np.searchsorted(flat, f)]
        order = np.argsort(-col, kind="stable")
        order = order[col[order] > 0][:n_images]
        out[c, r, : len(order)] = order
    return out


def selectivity(
    mass: np.ndarray, labels: np.ndarray, target: int, n_classes: int
) -> dict[str, float]:
    """How much of one feature's activation mass (``mass`` [N]: per captured image) falls on
    images of its target attribute class: ``selectivity``, the share of the total mass;
    ``selectivity_balanced``, the same share with each class's mass divided by its number of
    images (1 / n_classes = no preference, whatever the capture's class shares);
    ``chance``, the target class's share of the images (what ``selectivity`` is at no
    preference). NaN where the feature never fired or a class has no image."""
    mass = np.asarray(mass, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    per_class = np.array([mass[labels == c].sum() for c in range(n_classes)])
    counts = np.array([np.sum(labels == c) for c in range(n_classes)], dtype=np.float64)
    total = per_class.sum()
    means = np.divide(per_class, counts, out=np.full(n_classes, np.nan), where=counts > 0)
    return {
        "selectivity": float(per_class[target] / total) if total > 0 else np.nan,
        "selectivity_balanced": (
            float(means[target] / means.sum()) if total > 0 and (counts > 0).all() else np.nan
        ),
        "chance": float(counts[target] / counts.sum()) if counts.sum() else np.nan,
    }


def locate(
    captured: Mapping[str, np.ndarray], sae: TopKSAE, n_classes: int, cfg: LocateConfig
) -> dict[str, Any]:
    """Probes and attribution on a capture (``collect_activations`` plus ``labels``, the
    attribute class index of each final image): the top features per class
    [n_classes, n_features], the ranked-feature rows (class, rank, latent, score and the
    feature's ``selectivity`` for its class on the captured images), the probe
    rows (call, DDPM timestep, held-out accuracy, IG convergence delta) and the ``gallery``
    of the images that most activate the first features of each class."""
    h, labels = captured["h"], np.asarray(captured["labels"], dtype=np.int64)
    if h.shape[2] != sae.d_in:
        raise ValueError(
            f"locate_features: the SAE reads {sae.d_in} channels, the activations have "
            f"{h.shape[2]} (an SAE from another model)"
        )
    probes, probe_rows = fit_probes(h, labels, n_classes, cfg)
    scores, deltas = attribute_features(sae, probes, h, labels, n_classes, cfg)
    top = top_features(scores, min(cfg.n_features, sae.n_latents))
    flat = np.unique(top[top >= 0])
    mass, _peak = feature_activity(h, sae, flat)
    feature_rows = []
    for c in range(n_classes):
        for r in range(top.shape[1]):
            f = int(top[c, r])
            row = {"class_index": c, "rank": r, "latent": f, "score": np.nan}
            row.update(selectivity(np.zeros(len(h)), labels, c, n_classes))  # NaN, chance
            if f >= 0:
                row["score"] = float(scores[c, f])
                row.update(selectivity(mass[:, np.searchsorted(flat, f)], labels, c, n_classes))
            feature_rows.append(row)
    for row, t, d in zip(probe_rows, captured["timesteps"], deltas, strict=True):
        row.update({"t": float(t), "ig_delta": d})
    class_share = [float(np.mean(labels == c)) for c in range(n_classes)]
    return {
        "features": top,
        "scores": scores,
        "feature_rows": feature_rows,
        "probe_rows": probe_rows,
        "class_share": class_share,
        "gallery": gallery(h, sae, top),
    }
