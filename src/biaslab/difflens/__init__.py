"""Mechanistic debiasing (DiffLens, arXiv 2503.20483): the top-k sparse autoencoder
(``sae``) and the capture, attribution and intervention steps (``steps``).

Import the modules themselves; this file imports nothing."""
