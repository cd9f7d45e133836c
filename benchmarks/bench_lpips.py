"""Benchmark: exact all-pairs LPIPS from cached features vs the lpips package's pairwise loop.

    python benchmarks/bench_lpips.py [--n 256] [--net alex] [--size 64] [--quick]

Offline: LPIPS with the package's shipped linear weights over a randomly initialised trunk
(the timing does not depend on the trunk's weights). In one process it times

* reference A, the package's forward over all N(N-1)/2 pairs, ``--pair-batch`` pairs per call;
* reference B, the literal one-pair-per-call loop, on a random subsample of ``--single-pairs``
  pairs, extrapolated linearly to all pairs;
* ours: N network passes to the scaled flat rows ``u``, then the float64 Gram matrix
  (``pairwise_sq_lpips_from_features``) and the O(N) mean (``mean_pairwise_lpips``);

and prints wall times, speedups and the max |difference| over the pairs of reference A.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from biaslab.evaluation.backbones import LpipsBackbone
from biaslab.evaluation.metrics import mean_pairwise_lpips, pairwise_sq_lpips_from_features


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="number of images")
    ap.add_argument("--net", choices=("alex", "vgg"), default="alex")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--pair-batch", type=int, default=256, help="pairs per package call (ref A)")
    ap.add_argument("--single-pairs", type=int, default=300, help="pairs timed one by one (ref B)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--quick", action="store_true", help="smoke run: N=24, 40 single pairs")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.single_pairs = min(args.n, 24), min(args.single_pairs, 40)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import lpips

        ref = lpips.LPIPS(net=args.net, pretrained=True, pnet_rand=True, verbose=False).eval()
    bb = LpipsBackbone(args.net, resize=None, lpips_model=ref, batch_size=64)
    g = torch.Generator().manual_seed(args.seed)
    x = torch.rand(args.n, 3, args.size, args.size, generator=g) * 2 - 1
    n = args.n
    iu = torch.triu_indices(n, n, offset=1)
    n_pairs = iu.shape[1]
    print(
        f"LPIPS {args.net}, N={n} images {args.size}x{args.size}, {n_pairs} pairs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
    )

    # ours (timed first and again after the references, best of the two)
    def ours() -> tuple[torch.Tensor, float, float, float]:
        t0 = time.perf_counter()
        u = bb.lpips_features(x)
        t1 = time.perf_counter()
        d = pairwise_sq_lpips_from_features(u)
        m = mean_pairwise_lpips(u)
        t2 = time.perf_counter()
        return d, m, t1 - t0, t2 - t1

    d, m_ours, t_feat, t_gram = ours()

    # reference A: package forward over all pairs, batched
    ref_d = torch.empty(n_pairs, dtype=torch.float64)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, n_pairs, args.pair_batch):
            i, j = iu[0, s : s + args.pair_batch], iu[1, s : s + args.pair_batch]
            ref_d[s : s + len(i)] = ref(x[i], x[j]).flatten().double()
    t_ref_a = time.perf_counter() - t0

    # reference B: literal one pair per call on a subsample, extrapolated
    rng = np.random.default_rng(args.seed)
    sub = rng.choice(n_pairs, size=min(args.single_pairs, n_pairs), replace=False)
    single = torch.empty(len(sub), dtype=torch.float64)
    t0 = time.perf_counter()
    with torch.no_grad():
        for r, p in enumerate(sub):
            i, j = int(iu[0, p]), int(iu[1, p])
            single[r] = float(ref(x[i : i + 1], x[j : j + 1]))
    t_sub = time.perf_counter() - t0
    t_ref_b = t_sub * n_pairs / len(sub)

    d2, m2, t_feat2, t_gram2 = ours()
    assert torch.equal(d, d2) and m_ours == m2
    t_feat, t_gram = min(t_feat, t_feat2), min(t_gram, t_gram2)
    t_ours = t_feat + t_gram

    ours_pairs = d[iu[0], iu[1]]
    err_a = float((ours_pairs - ref_d).abs().max())
    err_b = float((ours_pairs[torch.from_numpy(sub)] - single).abs().max())
    m_ref = float(ref_d.mean())

    print(f"(a) ref A  package, {args.pair_batch} pairs/call, all pairs : {t_ref_a:9.3f} s")
    print(
        f"(a) ref B  package, 1 pair/call: {len(sub)} pairs in {t_sub:.3f} s "
        f"-> extrapolated to {n_pairs} pairs  : {t_ref_b:9.3f} s  (EXTRAPOLATED)"
    )
    print(
        f"(b) ours   {n} network passes {t_feat:.3f} s + Gram/mean {t_gram:.4f} s   : "
        f"{t_ours:9.3f} s"
    )
    print(f"speedup vs ref A (batched package loop)        : {t_ref_a / t_ours:9.1f}x")
    print(f"speedup vs ref B (one pair per call, extrap.)  : {t_ref_b / t_ours:9.1f}x")
    print(f"max |ours - ref A| over all {n_pairs} pairs      : {err_a:.3e}")
    print(f"max |ours - ref B| over the {len(sub)} single pairs   : {err_b:.3e}")
    print(
        f"mean pairwise LPIPS: ours {m_ours:.8f}, package {m_ref:.8f}, "
        f"|diff| {abs(m_ours - m_ref):.2e}"
    )
    if not (err_a < 1e-5 and err_b < 1e-5 and math.isclose(m_ours, m_ref, abs_tol=1e-6)):
        raise SystemExit("MISMATCH between ours and the lpips package")


if __name__ == "__main__":
    main()
