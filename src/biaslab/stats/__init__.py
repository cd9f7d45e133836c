"""The lab's statistics: intervals within and across trained models (``intervals``),
paired contrasts between cells (``contrasts``), claim verdicts (``claims``) and the gathering
of per-cell tables (``gather``).

Import the modules themselves; this file imports nothing."""
