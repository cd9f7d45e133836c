"""The leaves every layer reads: atomic writes and verified reads (``io``), image ranges
(``images``), config sections as dataclasses (``sections``), the grid columns of every tidy
table (``columns``) and the metric names (``metric_names``).

Import the modules themselves; this file imports nothing."""
