"""Statistics and distances used by the evaluation: exact binomial intervals, exact LPIPS
diversity from cached per-image features, and exact k-nearest-neighbour search.

Pure numpy / scipy / torch; nothing here reads or writes files.

LPIPS as a squared Euclidean distance
-------------------------------------
Zhang et al. (2018), "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
define (as implemented by the ``lpips`` package, ``lpips.LPIPS.forward``)

    d(x_i, x_j) = sum_l  1/(H_l W_l)  sum_{h,w}  sum_c  w_{l,c} (n_{i,l,c,h,w} - n_{j,l,c,h,w})^2

where ``n_{i,l} = f_l(x_i) / (sqrt(sum_c f_l(x_i)_c^2) + 1e-10)`` is the layer-``l`` feature map
unit-normalised over channels at every position (``lpips.normalize_tensor``) and ``w_{l,c} >= 0``
are the weights of the 1x1 convolutions ``lin{l}``. With

    u_{i,l} = flatten( sqrt(w_l) * n_{i,l} ) / sqrt(H_l W_l),     u_i = concat_l u_{i,l}

the distance is a plain squared Euclidean distance ``d(x_i, x_j) = |u_i - u_j|^2
= |u_i|^2 + |u_j|^2 - 2 u_i.u_j``. All N x N distances therefore need only N network passes and
one Gram matrix ``U U^T`` (computed here in float64), instead of N(N-1)/2 paired passes.
The mean over unordered pairs also follows in O(N F) from

    sum_{i<j} |u_i - u_j|^2 = N sum_i |u_i|^2 - |sum_i u_i|^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from biaslab.stats.intervals import proportion_interval

__all__ = [
    "clopper_pearson",
    "cross_sq_lpips_from_features",
    "knn_search",
    "knn_similarity",
    "label_adherence",
    "lpips_flat_features",
    "mean_pairwise_lpips",
    "pairwise_sq_lpips_from_features",
    "rho_model",
    "share",
]

LPIPS_EPS = 1e-10  # the eps of ``lpips.normalize_tensor``

# --------------------------------------------------------------------------------------------
# Binomial interval
# --------------------------------------------------------------------------------------------


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper & Pearson, 1934) two-sided ``1 - alpha`` interval for a binomial
    proportion ``k / n``: ``stats.intervals.proportion_interval`` (scipy's ``binomtest(k, n)
    .proportion_ci(method="exact")``). ``(nan, nan)`` when ``n == 0``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return proportion_interval(k, n, 1.0 - alpha)


def share(k: int, n: int, alpha: float = 0.05) -> dict[str, float | int]:
    """``{"value": k / n, "ci_low", "ci_high" (Clopper-Pearson), "k", "n"}``; nan when n = 0."""
    lo, hi = clopper_pearson(k, n, alpha)
    return {"value": k / n if n else math.nan, "ci_low": lo, "ci_high": hi, "k": int(k), "n": n}


def amplification(generated_minority_share: float, training_minority_share: float) -> float:
    """Bias amplification of a cell, the field's sign: the training set's minority
    (bias-conflicting) share minus the generated one. Positive: the majority (aligned) share
    grew, the bias was amplified; negative: it was reduced. The one definition in the code."""
    return float(training_minority_share) - float(generated_minority_share)


def rho_model(
    bias: np.ndarray, labels: np.ndarray, own: np.ndarray | None = None, alpha: float = 0.05
) -> dict[str, float | int]:
    """Bias alignment of generated images ("How I Met Your Bias"): the share whose bias
    attribute (e.g. background colour id) is their class's own attribute, with an exact
    ``1 - alpha`` interval. ``labels`` are the classes the samples were conditioned on (or
    classified as); ``own[c]`` is the aligned attribute of class ``c`` (default ``c`` itself:
    Biased MNIST digit ``c`` owns palette colour ``c``)."""
    bias, labels = np.asarray(bias), np.asarray(labels)
    if bias.shape != labels.shape or bias.ndim != 1:
        raise ValueError(f"rho_model: bias {bias.shape} and labels {labels.shape} differ")
    aligned = labels if own is None else np.asarray(own)[labels]
    return share(int((bias == aligned).sum()), bias.size, alpha)


def label_adherence(
    predicted: np.ndarray, conditioned: np.ndarray, alpha: float = 0.05
) -> dict[str, float | int]:
    """Share of samples whose classifier-predicted class equals the class they were
    conditioned on, with an exact ``1 - alpha`` interval (at low guidance a conditional model
    may not follow its label, and rho_model alone would hide it)."""
    predicted, conditioned = np.asarray(predicted), np.asarray(conditioned)
    if predicted.shape != conditioned.shape or predicted.ndim != 1:
        raise ValueError(
            f"label_adherence: predicted {predicted.shape} and labels {conditioned.shape} differ"
        )
    return share(int((predicted == conditioned).sum()), predicted.size, alpha)


# --------------------------------------------------------------------------------------------
# LPIPS from cached features
# --------------------------------------------------------------------------------------------


def lpips_flat_features(
    feature_maps: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor | None] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Turn per-layer feature maps of a batch into the scaled flat LPIPS rows ``u`` [N, F].

    For each layer ``l`` with map ``f_l`` [N, C_l, H_l, W_l] and channel weights ``w_l`` [C_l]
    (``None`` means ``w_l = 1``, i.e. the un-learned "baseline" LPIPS):

        n_l = f_l / (sqrt(sum_c f_l^2) + 1e-10)             (lpips.normalize_tensor)
        u_l = flatten(sqrt(w_l)[:, None, None] * n_l) / sqrt(H_l W_l)

    and ``u = concat_l u_l``, so that ``|u_i - u_j|^2`` is the LPIPS distance (module docstring).
    The normalisation is done in ``dtype`` (float64 by default). Weights must be nonnegative
    (true for the shipped ``lpips`` v0.1 linear layers, which are trained with clamping).
    """
    if weights is None:
        weights = [None] * len(feature_maps)
    if len(weights) != len(feature_maps):
        raise ValueError(f"{len(feature_maps)} feature maps but {len(weights)} weight vectors")
    rows = []
    for f, w in zip(feature_maps, weights, strict=True):
        if f.ndim != 4:
            raise ValueError(f"feature maps must be N x C x H x W, got shape {tuple(f.shape)}")
        f = f.detach().to(dtype)
        n = f / (torch.sqrt((f * f).sum(dim=1, keepdim=True)) + LPIPS_EPS)
        _, c, h, wd = n.shape
        if w is not None:
            w = w.detach().reshape(-1).to(device=f.device, dtype=dtype)
            if w.numel() != c:
                raise ValueError(f"layer has {c} channels but {w.numel()} weights")
            if bool((w < 0).any()):
                raise ValueError("LPIPS channel weights must be nonnegative for the Gram form")
            n = n * torch.sqrt(w)[None, :, None, None]
        rows.append((n / math.sqrt(h * wd)).reshape(n.shape[0], -1))
    return torch.cat(rows, dim=1)


def _as_rows(feats: torch.Tensor | np.ndarray | Sequence[torch.Tensor]) -> torch.Tensor:
    """A [N, F] float64 tensor from a tensor/array or a list of per-layer [N, F_l] blocks."""
    if isinstance(feats, np.ndarray):
        feats = torch.from_numpy(feats)
    if isinstance(feats, torch.Tensor):
        u = feats
    else:
        blocks = [torch.as_tensor(b).reshape(b.shape[0], -1) for b in feats]
        if not blocks:
            raise ValueError("empty feature list")
        u = torch.cat(blocks, dim=1)
    if u.ndim != 2:
        raise ValueError(f"features must be N x F, got shape {tuple(u.shape)}")
    return u.detach().to(torch.float64)


def cross_sq_lpips_from_features(
    a: torch.Tensor | Sequence[torch.Tensor],
    b: torch.Tensor | Sequence[torch.Tensor],
    *,
    chunk: int = 1024,
) -> torch.Tensor:
    """LPIPS between every row of ``a`` [N, F] and every row of ``b`` [M, F] as an N x M float64
    tensor: ``D_ij = |a_i|^2 + |b_j|^2 - 2 a_i.b_j`` (clamped at 0), in row blocks of ``chunk``.

    Inputs are scaled flat LPIPS rows (see :func:`lpips_flat_features`), either one [N, F]
    tensor or a list of per-layer [N, F_l] blocks (concatenated along the feature axis).
    """
    ua, ub = _as_rows(a), _as_rows(b)
    if ua.shape[1] != ub.shape[1]:
        raise ValueError(f"feature widths differ: {ua.shape[1]} vs {ub.shape[1]}")
    sa = (ua * ua).sum(dim=1)
    sb = (ub * ub).sum(dim=1)
    out = torch.empty(ua.shape[0], ub.shape[0], dtype=torch.float64)
    for s in range(0, ua.shape[0], max(1, chunk)):
        e = min(s + chunk, ua.shape[0])
        g = ua[s:e] @ ub.T
        out[s:e] = (sa[s:e, None] + sb[None, :] - 2.0 * g).clamp_min_(0.0).cpu()
    return out


def pairwise_sq_lpips_from_features(
    feats: torch.Tensor | Sequence[torch.Tensor], *, chunk: int = 1024
) -> torch.Tensor:
    """All pairwise LPIPS distances of one set as an N x N float64 tensor.

    ``feats`` holds the scaled flat LPIPS rows ``u`` (one [N, F] tensor, or a list of per-layer
    [N, F_l] blocks). ``D_ij = |u_i|^2 + |u_j|^2 - 2 (U U^T)_ij`` from a float64 Gram matrix built
    in row blocks of ``chunk``; the result is symmetrised, clamped at 0 and has an exact zero
    diagonal. Each entry equals ``lpips.LPIPS()(x_i, x_j)`` (module docstring).
    """
    u = _as_rows(feats)
    d = cross_sq_lpips_from_features(u, u, chunk=chunk)
    d = 0.5 * (d + d.T)
    d.fill_diagonal_(0.0)
    return d


def mean_pairwise_lpips(
    feats: torch.Tensor | Sequence[torch.Tensor], *, method: str = "identity", chunk: int = 1024
) -> float:
    """Mean LPIPS over the N(N-1)/2 unordered pairs ``i < j`` (the usual diversity score).

    ``method="identity"`` (default) uses, in float64,

        sum_{i<j} |u_i - u_j|^2 = N sum_i |u_i|^2 - |sum_i u_i|^2,

    which is O(N F). ``method="gram"`` averages the upper triangle of
    :func:`pairwise_sq_lpips_from_features`. Returns nan for N < 2.
    """
    u = _as_rows(feats)
    n = u.shape[0]
    if n < 2:
        return math.nan
    n_pairs = n * (n - 1) / 2.0
    if method == "identity":
        s = u.sum(dim=0)
        total = n * float((u * u).sum()) - float(s @ s)
        return max(total, 0.0) / n_pairs
    if method == "gram":
        d = pairwise_sq_lpips_from_features(u, chunk=chunk)
        iu = torch.triu_indices(n, n, offset=1)
        return float(d[iu[0], iu[1]].sum()) / n_pairs
    raise ValueError(f"method must be 'identity' or 'gram', got {method!r}")


# --------------------------------------------------------------------------------------------
# Exact k-nearest-neighbour search
# --------------------------------------------------------------------------------------------


def _knn_rows(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A 2-D CPU float tensor of ``x``: float32 / float64 kept as they are (no copy), any other
    dtype as float64."""
    t = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    t = t.detach().cpu()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float64)
    if t.ndim != 2:
        raise ValueError(f"expected a 2-D [rows, D] array, got shape {tuple(t.shape)}")
    return t


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows (last dimension) divided by their Euclidean norm (all-zero rows stay zero)."""
    nrm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return x / torch.where(nrm > 0, nrm, torch.ones_like(nrm))


class _Train:
    """The train rows as given (float32 or float64; candidates are gathered from them and
    widened to float64 by ``_exact_values``) and, once per search, the rows of a pass: in its
    dtype (for cosine the float64 unit rows rounded to it), their squared norms (l2) and the
    largest float64 norm (``pass_rows``, built in row blocks: the float32 pass needs no full
    float64 copy, and l2 on float32 rows no copy at all)."""

    BLOCK = 256  # rows converted at a time: a cache-sized float64 block

    def __init__(self, rows: torch.Tensor, metric: str):
        self.rows, self.metric = rows, metric
        self.m, self.dim = rows.shape
        self._cache: dict = {}

    def pass_rows(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        if dtype not in self._cache:
            same = self.metric == "l2" and self.rows.dtype == dtype  # the rows themselves
            out = self.rows if same else torch.empty(self.m, self.dim, dtype=dtype)
            tmax = 0.0
            for s in range(0, self.m, self.BLOCK):
                b = self.rows[s : s + self.BLOCK].to(torch.float64)
                norm = torch.linalg.vector_norm(b, dim=1, keepdim=True)
                if self.metric == "cosine":  # as _unit_rows, the norms at hand
                    b = b / torch.where(norm > 0, norm, torch.ones_like(norm))
                    norm = torch.linalg.vector_norm(b, dim=1)
                tmax = max(tmax, float(norm.max()))
                if not same:
                    out[s : s + len(b)] = b
            tsq = (out * out).sum(dim=1) if self.metric == "l2" else None
            self._cache[dtype] = (out, tsq, tmax)
        return self._cache[dtype]


def _candidates(
    q: torch.Tensor, t: torch.Tensor, tsq: torch.Tensor | None, c: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``c`` smallest ranking scores (smaller = nearer: ``|t|^2 - 2 q.t`` for l2, one
    ``addmm``; ``-q.t`` of unit rows for cosine) of each query row over all train rows: the
    full score matrix of a block of query rows (~64 MiB) and ``torch.topk``."""
    rows = max(1, int(2**24 // max(1, t.shape[0])))
    vs, ids = [], []
    for s in range(0, q.shape[0], rows):
        if tsq is None:
            v, i = torch.topk(q[s : s + rows] @ t.T, c, dim=1, sorted=False)
            v = -v
        else:
            sc = torch.addmm(tsq, q[s : s + rows], t.T, alpha=-2.0)
            v, i = torch.topk(sc, c, dim=1, largest=False, sorted=False)
        vs.append(v)
        ids.append(i)
    return torch.cat(vs), torch.cat(ids)


def _exact_values(q64: torch.Tensor, train: _Train, idx: torch.Tensor) -> torch.Tensor:
    """float64 values for the candidate pairs: squared distance (l2) or dot of unit rows."""
    out = torch.empty(idx.shape, dtype=torch.float64)
    rows = max(1, int(2**23 // max(1, idx.shape[1] * train.dim)))  # ~64 MiB float64 a block
    for s in range(0, q64.shape[0], rows):
        e = min(s + rows, q64.shape[0])
        cand = train.rows[idx[s:e]].to(torch.float64)  # [b, C, D]
        if train.metric == "l2":  # from the differences: no cancellation
            diff = cand - q64[s:e, None, :]
            out[s:e] = (diff * diff).sum(dim=2)
        else:  # dot products of unit rows (q64 holds unit rows)
            out[s:e] = (_unit_rows(cand) * q64[s:e, None, :]).sum(dim=2)
    return out


def _rank(values: torch.Tensor, idx: torch.Tensor, k: int, metric: str):
    """Sort candidates best-first (ascending distance / descending similarity), ties broken by
    the smaller train index, and keep the first ``k``."""
    order = torch.argsort(idx, dim=1)
    values, idx = torch.gather(values, 1, order), torch.gather(idx, 1, order)
    key = values if metric == "l2" else -values
    order = torch.argsort(key, dim=1, stable=True)[:, :k]
    return torch.gather(values, 1, order), torch.gather(idx, 1, order)


def _search_block(
    q64: torch.Tensor, train: _Train, k: int, c: int, dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One search pass for the query rows ``q64`` (already unit rows for cosine).

    ``dtype`` float32/float64: candidates from ``dtype`` matrix products and ``torch.topk``,
    exact float64 re-ranking and the certificate; returns ``(values, indices, certified)`` with
    values the float64 squared distance (l2) or dot product (cosine). ``dtype=None``: every
    train row is a candidate (direct float64 evaluation, always certified).
    """
    m, dim, metric = train.m, train.dim, train.metric
    if dtype is None or c >= m:
        # best k so far, merged over train blocks (_exact_values bounds its own memory)
        block = max(k, 4096)
        best_v = torch.empty(q64.shape[0], 0, dtype=torch.float64)
        best_i = torch.empty(q64.shape[0], 0, dtype=torch.long)
        for s in range(0, m, block):
            e = min(s + block, m)
            idx = torch.arange(s, e).expand(q64.shape[0], -1)
            ex = _exact_values(q64, train, idx)
            best_v, best_i = _rank(
                torch.cat([best_v, ex], dim=1), torch.cat([best_i, idx], dim=1), k, metric
            )
        return best_v, best_i, torch.ones(q64.shape[0], dtype=torch.bool)

    t, tsq, tmax = train.pass_rows(dtype)
    cv, ci = _candidates(q64.to(dtype), t, tsq, c)
    v, i = _rank(_exact_values(q64, train, ci), ci, k, metric)

    # Certificate. Every non-candidate has a ``dtype`` score >= cutoff (the worst candidate
    # score), hence a true score >= cutoff - eps; the row is exact if the k-th exact score is
    # strictly below that. Forward error bound (Higham, Accuracy and Stability of Numerical
    # Algorithms, 2nd ed., eq. 3.5): |fl(q.t) - q.t| <= gamma_n |q||t|, gamma_n = n u / (1 - n u),
    # with n = D + 2 covering the rounding of float64 inputs to ``dtype`` and the length-D dot
    # product in any summation order; the l2 score |t|^2 - 2 q.t adds the same bound for |t|^2
    # plus one rounding of the subtraction. A factor 2 is kept as headroom.
    u = float(torch.finfo(dtype).eps) / 2.0
    nu = (dim + 4) * u
    gamma = 2.0 * nu / (1.0 - nu) if nu < 0.5 else math.inf
    cutoff = cv.to(torch.float64).max(dim=1).values
    qnorm = torch.linalg.vector_norm(q64, dim=1)
    if metric == "l2":
        eps = gamma * (tmax**2 + 2.0 * qnorm * tmax)
        kth = v[:, -1] - (q64 * q64).sum(dim=1)  # score = |q - t|^2 - |q|^2
    else:
        eps = gamma * qnorm * tmax
        kth = -v[:, -1]
    slack = 1e-13 * (1.0 + kth.abs() + cutoff.abs())  # float64 rounding of this test itself
    ok = kth + slack < cutoff - eps
    return v, i, ok


def _knn_certified(
    gen: np.ndarray | torch.Tensor,
    train: np.ndarray | torch.Tensor,
    k: int,
    metric: str = "l2",
    *,
    chunk: int = 1024,
    margin: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`knn_search` plus, per row, the pass that certified it (0: float32 candidates,
    1: float64 candidates, 2: direct float64 scan of all train rows)."""
    if metric not in ("l2", "cosine"):
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    g64, rows = _knn_rows(gen).to(torch.float64), _knn_rows(train)
    n, m, dim = g64.shape[0], rows.shape[0], g64.shape[1]
    if rows.shape[1] != dim:
        raise ValueError(f"feature widths differ: gen {dim} vs train {rows.shape[1]}")
    if not 1 <= k <= m:
        raise ValueError(f"need 1 <= k <= number of train rows ({m}), got k={k}")
    if metric == "cosine":
        g64 = _unit_rows(g64)
    train_rows = _Train(rows, metric)
    chunk = max(1, int(chunk))
    c = min(m, k + max(1, int(margin)))  # >= 1 extra: the certificate needs a gap

    values = torch.empty(n, k, dtype=torch.float64)
    indices = torch.empty(n, k, dtype=torch.long)
    stage = torch.full((n,), -1, dtype=torch.long)
    for s in range(0, n, chunk):
        left = torch.arange(s, min(s + chunk, n))
        for level, dtype in enumerate((torch.float32, torch.float64, None)):
            v, i, ok = _search_block(g64[left], train_rows, k, c, dtype)
            values[left[ok]], indices[left[ok]], stage[left[ok]] = v[ok], i[ok], level
            left = left[~ok]
            if left.numel() == 0:
                break
    if metric == "l2":
        values = values.clamp_min(0.0).sqrt()
    return values, indices, stage


def knn_search(
    gen: np.ndarray | torch.Tensor,
    train: np.ndarray | torch.Tensor,
    k: int,
    metric: str = "l2",
    *,
    chunk: int = 1024,
    margin: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest training rows of every generated row.

    ``metric="l2"``: Euclidean distance ``|g - t|``, nearest = smallest. ``metric="cosine"``:
    cosine similarity ``g.t / (|g||t|)``, nearest = largest (an all-zero row has similarity 0 to
    everything).

    Algorithm: (1) for each block of ``chunk`` generated rows, float32 matrix products against
    every training row and ``torch.topk`` give the ``k + margin`` best float32 scores
    (``|t|^2 - 2 g.t`` resp. ``-g.t`` of unit rows) as candidates; (2) the candidates are
    re-ranked with float64 values computed from differences (``sum (g - t)^2``) resp. float64
    dot products; ties are broken by the smaller training index. (3) A row is accepted only if
    its k-th exact score is below the candidate cut-off minus a rigorous float32 error bound
    (so no non-candidate can be nearer); otherwise the row is searched again with float64
    candidates and the same certificate, and failing that by a direct float64 evaluation
    against every training row. The result is therefore the float64 brute-force answer.

    Why not a library brute force: float32 ``torch.cdist`` / ``topk`` or faiss-cpu's flat
    indexes cannot rank neighbours whose distances differ below float32 precision (exact ties,
    near-copies of a training image: what a memorization score looks for) and order ties
    arbitrarily; float64 ``cdist`` + ``topk`` is slower (``benchmarks/bench_knn.py``: 1.4-2.6x
    this search's time at 1000 x 50,000 rows, one thread) and still orders ties arbitrarily.
    The float32 pass is the float32 brute force itself plus the re-ranking.

    Returns ``(values [N, k] float64, indices [N, k] int64)``, best first.
    """
    v, i, _ = _knn_certified(gen, train, k, metric, chunk=chunk, margin=margin)
    return v.numpy(), i.numpy()


def knn_similarity(
    gen: np.ndarray | torch.Tensor,
    train: np.ndarray | torch.Tensor,
    ks: Sequence[int] = (1, 2, 5, 10),
    metric: str = "l2",
    *,
    chunk: int = 1024,
    margin: int = 16,
) -> dict[int, float]:
    """Memorization score per ``k``: ``mean_i mean_{r <= k} v_{i,r}`` where ``v_{i,r}`` is the
    distance (``l2``) or cosine similarity (``cosine``) of generated row ``i`` to its ``r``-th
    nearest training row (exact, see :func:`knn_search`, run once with ``max(ks)``).
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    v, _ = knn_search(gen, train, ks[-1], metric, chunk=chunk, margin=margin)
    return {k: float(v[:, :k].mean(axis=1).mean()) for k in ks}
