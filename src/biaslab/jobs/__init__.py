"""Workflow jobs that span capabilities: a model's sampler cells in one process (``cells``).

Import the modules themselves; this file imports nothing."""
