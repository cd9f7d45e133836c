"""The plan of a run, before any job: semantic config checks (``checks``), the trained
families (``families``), DiffLens and pretrained settings (``difflens``, ``pretrained``), the
workflow's targets and twin cells (``targets``), the figure table (``figures``), the compute
budget (``budget``) and the config reference (``reference``).

Import the modules themselves; this file imports nothing."""
