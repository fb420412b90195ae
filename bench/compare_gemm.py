#!/usr/bin/python3
"""Side-by-side markdown table of `k2rl bench kernels --json` and bench/openblas_gemm.py output.

    /usr/bin/python3 bench/compare_gemm.py k2rl.json openblas.json
Each file may hold several runs (one JSON object per line); per shape and form the best run counts.
"""
import json
import sys


def best(path):
    table = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            for row in json.loads(line)["gemm"]:
                key = (row["op"], row["m"], row["n"], row["k"])
                if key not in table or row["gflops"] > table[key]["gflops"]:
                    table[key] = row
    return table


def main():
    ours, blas = best(sys.argv[1]), best(sys.argv[2])
    print("| group | op | m | n | k | K2RL GFLOP/s | OpenBLAS GFLOP/s | K2RL / OpenBLAS | naive GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, row in ours.items():
        other = blas.get(key)
        ratio = f"{row['gflops'] / other['gflops']:.0%}" if other else "-"
        naive = row.get("naive_gflops")
        print(f"| {row.get('group', '')} | {key[0]} | {key[1]} | {key[2]} | {key[3]} | {row['gflops']:.1f} | "
              f"{other['gflops'] if other else '-'} | {ratio} | {naive if naive is not None else '-'} |")


if __name__ == "__main__":
    main()
