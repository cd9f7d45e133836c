"""Sampling: the sampler registry (``registry``: knobs, defaults, cost), one function per
sampler (``samplers``), the denoiser wrappers for guidance and the mid-block bypass
(``denoisers``) and a cell's generation with per-sample seeds (``generate``).

Import the modules themselves; this file imports nothing."""
