#!/usr/bin/python3
"""OpenBLAS sgemm on the shapes `k2rl bench kernels` times, for a side-by-side comparison.

Run (2 threads, the default core-type detection):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/openblas_gemm.py
Prints one JSON object {"blas": {...}, "gemm": [{"op", "m", "n", "k", "gflops", "ms"}, ...]} on stdout.
Forms on the same (m, n, k): nn = a @ b, nt = a @ b.T, tn = a.T @ b (float32, C-contiguous operands).
"""
import argparse
import io
import json
import os
import sys
import time
from contextlib import redirect_stdout

import numpy as np

SHAPES = [("square", 512, 512, 512), ("square", 1024, 1024, 1024), ("square", 2048, 2048, 2048)]
SHAPES += [("k2-nano", 2048, dout, din) for din, dout in
           [(256, 768), (768, 256), (256, 128), (128, 192), (256, 80), (64, 256), (128, 256), (256, 512)]]
SHAPES += [("expert", 256, dout, din) for din, dout in [(256, 128), (128, 256)]]


def blas_info():
    info = {"numpy": np.__version__,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture",
                                                        "threading_layer", "filepath")} for p in threadpool_info()]
    except ImportError:
        buf = io.StringIO()
        with redirect_stdout(buf):
            np.show_config()
        info["show_config"] = buf.getvalue()
    return info


def time_op(fn, flops, trials, trial_seconds):
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    reps = max(1, int(trial_seconds / once))
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--trial-seconds", type=float, default=0.15)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    rows = []
    for group, m, n, k in SHAPES:
        flops = 2.0 * m * n * k
        for op in ("nn", "nt", "tn"):
            a = (rng.random((k, m) if op == "tn" else (m, k), dtype=np.float32) - 0.5)
            b = (rng.random((n, k) if op == "nt" else (k, n), dtype=np.float32) - 0.5)
            c = np.empty((m, n), dtype=np.float32)
            if op == "nn":
                fn = lambda: np.matmul(a, b, out=c)
            elif op == "nt":
                fn = lambda: np.matmul(a, b.T, out=c)
            else:
                fn = lambda: np.matmul(a.T, b, out=c)
            s = time_op(fn, flops, args.trials, args.trial_seconds)
            rows.append({"op": op, "m": m, "n": n, "k": k, "gflops": round(flops / s / 1e9, 2),
                         "ms": round(s * 1e3, 4), "group": group})
            print(f"{op} {m}x{n}x{k}: {flops / s / 1e9:.1f} GFLOP/s", file=sys.stderr)
    print(json.dumps({"blas": blas_info(), "gemm": rows}))


if __name__ == "__main__":
    main()
