"""Benchmark: the project's exact kNN search against library brute force, side by side.

    python benchmarks/bench_knn.py [--queries 1000] [--refs 50000] [--k 10] \\
        [--cases cosine:256,cosine:2048,l2:768] [--threads 1] [--quick]

For each case (metric : feature width; the widths the project searches: the evaluation
classifier's / a small backbone's 256-d and Inception's 2048-d features with cosine, 16x16x3
pixels with L2) it builds one synthetic problem and times, in this process,

* ``project``: ``biaslab.evaluation.metrics.knn_search`` (float32 candidates, float64 re-ranking, a
  rigorous float32 error certificate, float64 fallback; ties to the smaller index);
* ``cdist64+topk``: ``torch.cdist`` (L2) or the float64 product of unit rows (cosine), then
  ``torch.topk``, in query blocks (the plain float64 brute force);
* ``cdist32+topk``: the same in float32;
* ``faiss-flat``: faiss-cpu ``IndexFlatL2`` / ``IndexFlatIP`` on unit rows (float32), when
  faiss is installed;

and prints each method's wall time, its ratio to the project's (> 1: the project is faster),
and whether it agrees with the project: the rows whose k neighbour indices are the same in
the same order, and the max |difference| of the reported distances / similarities. The data:
ReLU-like non-negative features (cosine) or smooth quantised images (L2), 2% of the queries
near-copies of a reference row (what the memorization score looks for) and a duplicated
reference row (an exact tie).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from biaslab.evaluation.metrics import knn_search

BLOCK = 256  # query rows per library call (bounds the [BLOCK, refs] score matrix)


def make_problem(metric: str, dim: int, n_q: int, n_r: int, seed: int = 0):
    """float32 queries and references: cosine - |normal| features around 20 cluster centres;
    l2 - 16x16x3-style smooth images (a 4x4 grid upsampled plus noise) in [-1, 1], quantised
    to 8 bits as stored samples are. 2% of the queries are near-copies of a reference row and
    reference 1 duplicates reference 0."""
    rng = np.random.default_rng(seed)
    n = n_q + n_r
    if metric == "cosine":
        centres = np.abs(rng.normal(size=(20, dim)))
        x = np.abs(centres[rng.integers(0, 20, n)] + 0.7 * rng.normal(size=(n, dim)))
    else:
        side = round((dim / 3) ** 0.5)
        if 3 * side * side != dim or side % 4:
            raise ValueError(f"l2 cases are 3 x side x side pixels, side a multiple of 4: {dim}")
        coarse = rng.uniform(-1, 1, size=(n, 3, 4, 4))
        img = np.kron(coarse, np.ones((side // 4, side // 4))) + 0.2 * rng.normal(
            size=(n, 3, side, side)
        )
        x = np.round((np.clip(img, -1, 1) + 1) * 127.5) / 127.5 - 1  # uint8 levels
        x = x.reshape(n, -1)
    x = x.astype(np.float32)
    q, r = x[:n_q].copy(), x[n_q:].copy()
    r[1] = r[0]
    copies = rng.choice(np.arange(2, n_r), max(1, n_q // 50), replace=False)
    copies[0] = 0  # query 0's two nearest: references 0 and 1, tied
    q[: len(copies)] = r[copies] + 0.01 * rng.normal(size=(len(copies), r.shape[1]))
    return q, r


def torch_brute(q: np.ndarray, r: np.ndarray, k: int, metric: str, dtype: torch.dtype):
    """``torch.cdist`` (L2) / unit-row products (cosine) + ``torch.topk``, query blocks."""
    qt, rt = torch.from_numpy(q).to(dtype), torch.from_numpy(r).to(dtype)
    if metric == "cosine":
        qt = torch.nn.functional.normalize(qt, dim=1)
        rt = torch.nn.functional.normalize(rt, dim=1)
    vs, ids = [], []
    for s in range(0, len(qt), BLOCK):
        if metric == "l2":
            d = torch.cdist(qt[s : s + BLOCK], rt)
            v, i = torch.topk(d, k, dim=1, largest=False)
        else:
            v, i = torch.topk(qt[s : s + BLOCK] @ rt.T, k, dim=1)
        vs.append(v)
        ids.append(i)
    return torch.cat(vs).double().numpy(), torch.cat(ids).numpy()


def faiss_flat(q: np.ndarray, r: np.ndarray, k: int, metric: str):
    """faiss-cpu exact flat index: ``IndexFlatL2`` (squared distances, square-rooted here) or
    ``IndexFlatIP`` on unit rows (cosine)."""
    import faiss

    q, r = np.ascontiguousarray(q, np.float32), np.ascontiguousarray(r, np.float32)
    if metric == "cosine":
        q, r = q.copy(), r.copy()
        faiss.normalize_L2(q)
        faiss.normalize_L2(r)
        index = faiss.IndexFlatIP(r.shape[1])
    else:
        index = faiss.IndexFlatL2(r.shape[1])
    index.add(r)
    v, i = index.search(q, k)
    v = v.astype(np.float64)
    return (np.sqrt(np.maximum(v, 0)) if metric == "l2" else v), i.astype(np.int64)


def timed(fn: Callable, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_case(metric: str, dim: int, args) -> list[dict]:
    q, r = make_problem(metric, dim, args.queries, args.refs, args.seed)
    k = args.k
    methods: dict[str, Callable] = {
        "project": lambda: knn_search(q, r, k, metric),
        "cdist64+topk": lambda: torch_brute(q, r, k, metric, torch.float64),
        "cdist32+topk": lambda: torch_brute(q, r, k, metric, torch.float32),
    }
    try:
        import faiss

        faiss.omp_set_num_threads(max(1, args.threads or torch.get_num_threads()))
        methods["faiss-flat"] = lambda: faiss_flat(q, r, k, metric)
    except ImportError:
        print("faiss not installed: faiss-flat skipped")
    qs, rs = q[:8], r[: 64 * k]  # warm-up on a slice: allocators, BLAS kernels, faiss
    knn_search(qs, rs, k, metric)
    torch_brute(qs, rs, k, metric, torch.float64)
    torch_brute(qs, rs, k, metric, torch.float32)
    if "faiss-flat" in methods:
        faiss_flat(qs, rs, k, metric)
    rows, ref = [], None
    for name, fn in methods.items():
        sec, (v, i) = timed(fn, args.repeats)
        if ref is None:
            ref = (v, i, sec)
        same = float((i == ref[1]).all(axis=1).mean())
        rows.append(
            {
                "case": f"{metric}:{dim}",
                "method": name,
                "seconds": sec,
                "x_project_time": sec / ref[2],
                "rows_same_neighbours": same,
                "max_abs_value_diff": float(np.abs(v - ref[0]).max()),
            }
        )
        print(
            f"{metric}:{dim:<5} {name:<13} {sec:8.2f} s  x{sec / ref[2]:5.2f} of project  "
            f"same neighbours in {100 * same:6.2f}% of rows  max |value diff| "
            f"{rows[-1]['max_abs_value_diff']:.2e}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--refs", type=int, default=50000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--cases", default="cosine:256,cosine:2048,l2:768")
    ap.add_argument("--threads", type=int, default=1, help="torch / faiss threads (0: default)")
    ap.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 40 queries x 2000 refs")
    args = ap.parse_args(argv)
    if args.quick:
        args.queries, args.refs = min(args.queries, 40), min(args.refs, 2000)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(
        f"{args.queries} queries x {args.refs} references, k = {args.k}, "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
    )
    rows = []
    for case in args.cases.split(","):
        metric, dim = case.split(":")
        rows += run_case(metric, int(dim), args)
    return rows


if __name__ == "__main__":
    main()
