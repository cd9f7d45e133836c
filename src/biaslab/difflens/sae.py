"""A top-k sparse autoencoder over activation vectors (DiffLens, adapted from EleutherAI's
sparsify): ``z = TopK(ReLU(W_enc (x - b_dec) + b_enc))``, ``x_hat = W_dec^T z + b_dec``, the
decoder initialised as the encoder's transpose and kept at unit norm, loss = fraction of
variance unexplained (FVU), Adam with linear decay and gradient clipping. Written here (a short
module, tested on planted sparse dictionaries) rather than taken from ``eai-sparsify``, which
trains on Hugging Face transformer hooks and brings transformers/datasets with it.

Files: ``save_sae`` / ``load_sae`` (atomic, content-hashed, with the fingerprint of the U-Net
whose mid-block it reads: a file from another model is refused).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from biaslab.base.sections import SAEConfig


def positions(h: np.ndarray | torch.Tensor) -> torch.Tensor:
    """h [..., C, H, W] as position vectors [..., H * W, C] (float32)."""
    h = torch.as_tensor(h).float()
    return h.flatten(-2).transpose(-1, -2)


def sae_vectors(h: np.ndarray) -> torch.Tensor:
    """Captured h [N, S, C, H, W] as the SAE's training vectors [N * S * H * W, C]."""
    return positions(h).reshape(-1, h.shape[2])


class TopKSAE(nn.Module):
    """Top-k SAE over ``d_in``-vectors with ``expansion * d_in`` latents (sparsify layout)."""

    def __init__(self, d_in: int, expansion: int, k: int):
        super().__init__()
        m = int(d_in) * int(expansion)
        if not 1 <= k <= m:
            raise ValueError(f"difflens.sae.k: {k} is not in [1, {m}] (latents = {m})")
        self.d_in, self.expansion, self.k = int(d_in), int(expansion), int(k)
        self.encoder = nn.Linear(self.d_in, m)
        self.encoder.bias.data.zero_()
        self.W_dec = nn.Parameter(self.encoder.weight.data.clone())  # [m, d_in]
        self.b_dec = nn.Parameter(torch.zeros(self.d_in))
        self.normalise_decoder()

    @property
    def n_latents(self) -> int:
        return self.W_dec.shape[0]

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.encoder(x - self.b_dec))
        vals, idx = pre.topk(self.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Fraction of variance unexplained: ``sum |x - x_hat|^2 / sum |x - mean(x)|^2``."""
    total = (x - x.mean(0)).pow(2).sum()
    return (x - x_hat).pow(2).sum() / total.clamp_min(1e-12)


def train_sae(vectors: torch.Tensor, cfg: SAEConfig) -> tuple[TopKSAE, dict[str, Any]]:
    """Fit a ``TopKSAE`` to ``vectors`` [n, d]; stats: final FVU on all vectors, the share of
    latents never active on them (dead), the loss curve every 1/20 of training."""
    x = torch.as_tensor(vectors).float()
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"train_sae: need [n >= 2, d] vectors, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise FloatingPointError("train_sae: the activations hold NaN or inf")
    gen = torch.Generator().manual_seed(int(cfg.seed))
    torch.manual_seed(int(cfg.seed))
    sae = TopKSAE(x.shape[1], cfg.expansion, cfg.k)
    with torch.no_grad():
        sae.b_dec.data = x.mean(0)  # as sparsify: start the decoder bias at the data mean
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(cfg.steps, 1))
    curve = []
    for step in range(cfg.steps):
        idx = torch.randint(0, len(x), (min(cfg.batch_size, len(x)),), generator=gen)
        xb = x[idx]
        x_hat, _z = sae(xb)
        loss = fvu(xb, x_hat)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train_sae: the loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        sae.normalise_decoder()
        if step % max(cfg.steps // 20, 1) == 0 or step == cfg.steps - 1:
            curve.append({"step": step, "fvu": loss.item()})
    with torch.no_grad():
        active = torch.zeros(sae.n_latents, dtype=torch.bool)
        err = tot = 0.0
        mean = x.mean(0)
        for s in range(0, len(x), 8192):
            xb = x[s : s + 8192]
            x_hat, z = sae(xb)
            active |= (z > 0).any(0)
            err += float((xb - x_hat).pow(2).sum())
            tot += float((xb - mean).pow(2).sum())
    stats = {
        "fvu": err / max(tot, 1e-12),
        "dead_share": float((~active).float().mean()),
        "n_vectors": len(x),
        "curve": curve,
    }
    return sae, stats


def fingerprint(unet: nn.Module) -> str:
    """A short hash of a U-Net's mid-block weights: an SAE or feature file names the model it
    was made from, and a file from another model is refused."""
    h = hashlib.sha256()
    for name, p in sorted(unet.mid_block.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_sae(sae: TopKSAE, path: str | Path, *, model_fingerprint: str, stats: Mapping) -> None:
    from biaslab.base.io import save_torch

    save_torch(
        {
            "state_dict": sae.state_dict(),
            "d_in": sae.d_in,
            "expansion": sae.expansion,
            "k": sae.k,
            "model_fingerprint": model_fingerprint,
            "stats": dict(stats),
        },
        path,
    )


def load_sae(path: str | Path, *, model_fingerprint: str | None = None) -> TopKSAE:
    """An SAE file, refused when it was trained on another model's mid-block."""
    from biaslab.base.io import load_torch

    blob = load_torch(path)
    if model_fingerprint is not None and blob["model_fingerprint"] != model_fingerprint:
        raise ValueError(
            f"{path}: this SAE was trained on the mid-block of another model (fingerprint "
            f"{blob['model_fingerprint']}, the model's is {model_fingerprint}); rerun train_sae"
        )
    sae = TopKSAE(blob["d_in"], blob["expansion"], blob["k"])
    sae.load_state_dict(blob["state_dict"])
    return sae.eval()
