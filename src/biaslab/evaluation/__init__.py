"""What a cell's samples show: the evaluation classifier (``classifier``), feature
backbones (``backbones``), LPIPS / kNN / binomial metrics (``metrics``), fairness and image
quality (``quality``), the attribute readouts (``attributes``), a cell's tidy tables (``cell``),
what the model knows (``probe``) and the one-time weight fetcher (``fetch_weights``).

Import the modules themselves; this file imports nothing."""
