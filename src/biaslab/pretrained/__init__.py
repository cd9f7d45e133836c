"""Models this lab did not train, from local folders: what a folder must hold
(``layouts``), loading and sampling (``models``), attribute labellers (``labellers``) and a
cell's bias from their labels (``evaluate``).

Import the modules themselves; this file imports nothing."""
