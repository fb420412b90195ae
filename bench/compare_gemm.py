#!/usr/bin/python3
"""Side-by-side markdown table of `k2rl bench kernels --json` and bench/openblas_gemm.py output.

    /usr/bin/python3 bench/compare_gemm.py k2rl.json openblas.json
Each file may hold several runs (one JSON object per line); per shape and form the best run counts.
When the K2RL runs were made with `--openblas LIB`, their in-process OpenBLAS figures (timed in the same trials,
interleaved) get a column too, and the ratio is taken against the better of the two OpenBLAS figures. The paired
ratio is the median over runs of each run's median per-trial (OpenBLAS time / K2RL time), from the same trials.
"""
import json
import sys


def best(path, field="gflops"):
    table = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            for row in json.loads(line)["gemm"]:
                key = (row["op"], row["m"], row["n"], row["k"])
                if row.get(field) is None:
                    continue
                if key not in table or row[field] > table[key][field]:
                    table[key] = row
    return table


def median_ratio(path):
    """Per shape and form: the median over runs of each run's median per-trial ratio (OpenBLAS time / K2RL time)."""
    ratios = {}
    with open(path) as f:
        for line in f:
            if line.strip().startswith("{"):
                for row in json.loads(line)["gemm"]:
                    if row.get("vs_openblas_median") is not None:
                        ratios.setdefault((row["op"], row["m"], row["n"], row["k"]), []).append(row["vs_openblas_median"])
    return {key: sorted(v)[len(v) // 2] for key, v in ratios.items()}


def main():
    ours, blas = best(sys.argv[1]), best(sys.argv[2])
    inproc = best(sys.argv[1], "openblas_gflops")
    paired = median_ratio(sys.argv[1])
    print("| group | op | m | n | k | K2RL GFLOP/s | OpenBLAS in-process | OpenBLAS numpy | K2RL / best OpenBLAS | paired ratio | naive GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, row in ours.items():
        numpy_g = blas[key]["gflops"] if key in blas else None
        inproc_g = inproc[key]["openblas_gflops"] if key in inproc else None
        ref = max([g for g in (numpy_g, inproc_g) if g is not None], default=None)
        ratio = f"{row['gflops'] / ref:.0%}" if ref else "-"
        naive = row.get("naive_gflops") if row.get("naive_gflops") is not None else "-"
        fmt = lambda g: f"{g:.1f}" if g is not None else "-"
        print(f"| {row.get('group', '')} | {key[0]} | {key[1]} | {key[2]} | {key[3]} | {row['gflops']:.1f} | "
              f"{fmt(inproc_g)} | {fmt(numpy_g)} | {ratio} | {f'{paired[key]:.0%}' if key in paired else '-'} | {naive} |")


if __name__ == "__main__":
    main()
