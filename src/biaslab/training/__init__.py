"""Diffusion training (``train``): noise schedule, objective, AdamW, EMA, resumable.

Import the modules themselves; this file imports nothing."""
