"""Denoiser wrappers: classifier-free guidance and the mid-block bypass.

Samplers only ever call ``denoiser(x, t) -> eps`` (``t`` on the DDPM timestep scale); what the
network does inside is changed here, never in a sampler. The network's raw output becomes eps
through its training objective's adapter (``biaslab.models.objectives``), which these wrappers wrap.

* ``GuidedDenoiser`` - classifier-free guidance (Ho & Salimans 2022, Eq. 6, in the
  "How I Met Your Bias" convention): ``eps = (1 + w) * eps(x, t, c) - w * eps(x, t, null)``,
  conditional and unconditional halves in one batched forward pass of the adapter-wrapped
  network (``eps`` predictions, whatever the objective). ``w = 0`` is the plain conditional
  model (and then only the conditional half is computed).
* ``mid_block_bypass`` - "Deeper Diffusion Models Amplify Bias", Fig. 6: a fraction ``p`` of
  the U-Net mid-block is bypassed, ``mid_out = (1 - p) * mid_block(h) + p * h``, through a
  forward hook removed on exit. With ``schedule="linear"`` the fraction ramps over the
  denoising trajectory, linearly in the DDPM timestep, from 0 at ``t = T - 1`` (pure noise) to
  ``p`` at ``t = 0``: ``p(t) = p * (1 - t / (T - 1))``, per sample. For samplers on evenly
  spaced timesteps (ddpm, ddim) that is linear in the step index; for Karras-sigma samplers it
  follows the (fractional) timestep the network is evaluated at (for a network whose timestep
  input is not the DDPM timestep, ``timestep_to_t`` maps it back: EDM's ``250 ln sigma``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from diffusers import UNet2DModel

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BYPASS_SCHEDULES = ("constant", "linear")


def _batch_t(t: torch.Tensor, n: int) -> torch.Tensor:
    t = torch.as_tensor(t)
    return t.expand(n) if t.ndim == 0 else t


def network(unet: UNet2DModel) -> Callable[..., torch.Tensor]:
    """``net(x, t, **kw) -> unet(x, t, **kw).sample`` without gradients: the raw network that
    an objective's adapter (``biaslab.models.objectives``) wraps."""

    @torch.no_grad()
    def net(x: torch.Tensor, t: torch.Tensor, **kw) -> torch.Tensor:
        return unet(x, t, **kw).sample

    return net


class GuidedDenoiser:
    """Classifier-free guidance around a class-conditional eps denoiser.

    ``GuidedDenoiser(eps, w, null_class)(x, t, labels)`` returns
    ``(1 + w) * eps(x, t, labels) - w * eps(x, t, null_class)``, both from one forward pass
    over the concatenated batch ``[x; x]``. ``eps(x, t, class_labels=...)`` is the
    adapter-wrapped network (``Objective.adapter``); a ``UNet2DModel`` stands for its raw output
    (an epsilon-prediction model). ``bind(labels)`` gives a plain ``(x, t)`` denoiser for the
    samplers.
    """

    def __init__(self, eps: Callable[..., torch.Tensor] | UNet2DModel, w: float, null_class: int):
        if w < 0:
            raise ValueError(f"guidance: w = {w} is negative")
        self.eps = network(eps) if isinstance(eps, torch.nn.Module) else eps
        self.w = float(w)
        self.null_class = int(null_class)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t = _batch_t(t, x.shape[0])
        if self.w == 0.0:  # (1 + 0) * cond - 0 * uncond == cond: skip the unconditional half
            return self.eps(x, t, class_labels=labels)
        null = torch.full_like(labels, self.null_class)
        out = self.eps(torch.cat([x, x]), torch.cat([t, t]), class_labels=torch.cat([labels, null]))
        cond, uncond = out.chunk(2)
        return (1.0 + self.w) * cond - self.w * uncond

    def bind(self, labels: torch.Tensor) -> Denoiser:
        return lambda x, t: self(x, t, labels)


class TextGuidedDenoiser:
    """Classifier-free guidance around a text-conditioned eps denoiser (Stable Diffusion):
    ``(1 + w) * eps(x, t, text) - w * eps(x, t, null)`` with ``null`` the negative prompt's
    embedding, both halves in one forward pass, as ``StableDiffusionPipeline`` computes
    ``uncond + guidance_scale * (text - uncond)`` with ``guidance_scale = 1 + w``. ``w = 0``
    is the plain text-conditional model (one half only)."""

    def __init__(self, eps: Callable[..., torch.Tensor], w: float):
        if w < 0:
            raise ValueError(f"guidance: w = {w} is negative")
        self.eps, self.w = eps, float(w)

    def bind(self, text: torch.Tensor, null: torch.Tensor | None) -> Denoiser:
        """A plain ``(x, t)`` denoiser for the text embeddings ``text`` [N, L, D] and the null
        embedding ``null`` [1, L, D] (needed when ``w != 0``)."""
        if self.w != 0.0 and null is None:
            raise ValueError("guidance: w != 0 needs the negative prompt's embedding")

        @torch.no_grad()
        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = _batch_t(t, x.shape[0])
            if self.w == 0.0:
                return self.eps(x, t, encoder_hidden_states=text)
            emb = torch.cat([null.expand(len(text), -1, -1), text])  # diffusers: [uncond; cond]
            out = self.eps(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=emb)
            uncond, cond = out.chunk(2)
            return uncond + (1.0 + self.w) * (cond - uncond)

        return denoise


def conditional_denoiser(model: UNet2DModel, labels: torch.Tensor) -> Denoiser:
    """The plain conditional denoiser ``(x, t) -> model(x, t, labels)``."""

    @torch.no_grad()
    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x, _batch_t(t, x.shape[0]), class_labels=labels).sample

    return denoise


@contextlib.contextmanager
def mid_block_bypass(
    unet: UNet2DModel,
    p: float,
    *,
    schedule: str = "constant",
    num_train_timesteps: int = 1000,
    timestep_to_t: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[UNet2DModel]:
    """Within the block, ``unet.mid_block`` outputs ``(1 - p) * mid_block(h) + p * h``.

    ``schedule``: "constant" (``p`` at every step) or "linear" (``p * (1 - t / (T - 1))`` for
    timestep ``t``, ``T = num_train_timesteps``). ``timestep_to_t`` maps the U-Net's timestep
    input to the DDPM timestep ``t`` (``Objective.train_timestep``; None: it is ``t``).
    ``p = 0`` leaves the outputs bit-identical; ``p = 1`` makes the mid-block the identity.
    The hooks are removed on exit.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"bypass: p = {p} is not in [0, 1]")
    if schedule not in BYPASS_SCHEDULES:
        raise ValueError(f"bypass_schedule: {schedule!r} is not one of {BYPASS_SCHEDULES}")
    if getattr(unet, "mid_block", None) is None:
        raise ValueError("mid_block_bypass: the U-Net has no mid_block")
    state: dict[str, torch.Tensor] = {}

    def record_t(_module, args, kwargs):
        t = kwargs["timestep"] if "timestep" in kwargs else args[1]
        sample = kwargs["sample"] if "sample" in kwargs else args[0]
        t = _batch_t(torch.as_tensor(t, device=sample.device), sample.shape[0])
        state["t"] = t if timestep_to_t is None else timestep_to_t(t).to(sample.device)

    def mix(_module, args, output):
        h = args[0]
        if schedule == "constant":
            frac: float | torch.Tensor = p
        else:
            t = state["t"].to(torch.float32)
            frac = (p * (1.0 - t / (num_train_timesteps - 1))).clamp(0.0, p).view(-1, 1, 1, 1)
        return (1.0 - frac) * output + frac * h

    handles = [
        unet.register_forward_pre_hook(record_t, with_kwargs=True),
        unet.mid_block.register_forward_hook(mix),
    ]
    try:
        yield unet
    finally:
        for handle in handles:
            handle.remove()
