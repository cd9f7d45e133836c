"""The networks and what they predict: the U-Nets of Table A (``unets``), the training
objectives and their samplers' adapter (``objectives``), and model folders as diffusers
pipelines (``interop``).

Import the modules themselves; this file imports nothing."""
