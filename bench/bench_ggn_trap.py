#!/usr/bin/python3
"""The cross-entropy GGN under `--method auto` against the explicit methods, side by side.

Workload (issue 14): MLP 622 -> dense(1024) -> tanh -> dense(10), N = 648,202, n = 32, k = 10,
cross-entropy, `--want jacobian,ggn`. Each method runs as a fresh `basin analyze --local
--device cpu --json` process per repeat; time = wall clock of the whole process, peak RSS =
GNU /usr/bin/time %M of that process. Medians over the repeats. With `--before PATH` a second
basin binary (e.g. the main branch's) runs `auto` too, for the before/after row.

A cross-entropy GGN always has the softmax's null direction (rank <= n(k-1)); a factor with k
columns per example makes `auto` see an apparent deficiency in its Gram and refine with the SVD
of the materialised G~ (n·k × N). The reduced factor (k − 1 columns) removes it.

Usage: /usr/bin/python3 bench/bench_ggn_trap.py [--repeats 3] [--basin build/bin/basin] [--before PATH]
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BASIN = os.path.join(os.path.dirname(HERE), "build", "bin", "basin")
D, WIDTH, K, N_EX = 622, 1024, 10, 32


def make_case(tmp):
    rng = np.random.default_rng(14)
    spec = {"input_dim": D, "layers": [{"type": "dense", "out": WIDTH}, {"type": "tanh"},
                                       {"type": "dense", "out": K}]}
    n_params = D * WIDTH + WIDTH + WIDTH * K + K
    theta = np.concatenate([rng.normal(size=D * WIDTH) / np.sqrt(D), rng.normal(size=WIDTH) * 0.1,
                            rng.normal(size=WIDTH * K) / np.sqrt(WIDTH), rng.normal(size=K) * 0.1])
    assert theta.size == n_params
    files = {"model": os.path.join(tmp, "spec.json"), "params": os.path.join(tmp, "p.npy"),
             "inputs": os.path.join(tmp, "X.npy"), "targets": os.path.join(tmp, "y.npy")}
    with open(files["model"], "w") as f:
        json.dump(spec, f)
    np.save(files["params"], theta)
    np.save(files["inputs"], rng.normal(size=(N_EX, D)))
    np.save(files["targets"], rng.integers(0, K, size=N_EX))
    return files, n_params


def run_once(basin, files, method, tmp):
    out, err = os.path.join(tmp, "out.json"), os.path.join(tmp, "time.txt")
    cmd = ["/usr/bin/time", "-f", "%M", "-o", err, basin, "analyze", "--local", "--device", "cpu",
           "--model", files["model"], "--params", files["params"], "--inputs", files["inputs"],
           "--targets", files["targets"], "--loss", "cross_entropy", "--want", "jacobian,ggn",
           "--method", method, "--json"]
    t0 = time.perf_counter()
    with open(out, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    with open(err) as f:
        peak_kib = int(f.read().split()[-1])
    with open(out) as f:
        res = json.load(f)
    return wall, peak_kib * 1024, res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--basin", default=DEFAULT_BASIN)
    ap.add_argument("--before", help="another basin binary to run `auto` with (the before row)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files, n_params = make_case(tmp)
        runs = [("auto", args.basin, "auto"), ("gram", args.basin, "gram"), ("svd", args.basin, "svd")]
        if args.before:
            runs.append(("auto (before)", args.before, "auto"))
        print(f"# {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}, "
              f"N = {n_params:,}, n = {N_EX}, k = {K}, cross-entropy, --want jacobian,ggn, "
              f"medians of {args.repeats}")
        rows = {}
        for _ in range(args.repeats):  # interleaved: load changes hit every method alike
            for name, basin, method in runs:
                rows.setdefault(name, []).append(run_once(basin, files, method, tmp))
        print(f"# load after {os.getloadavg()[0]:.2f}")
        ref = rows["svd"][0][2]["ggn"]["eigenvalues"]
        print("| method | wall s (median) | peak RSS MB (median) | ggn method | refined_from | rank(G) | rank(GGN) "
              "| max |Δλ| / λ_max vs svd |")
        print("|---|---|---|---|---|---|---|---|")
        for name, samples in rows.items():
            res = samples[0][2]
            g = res["ggn"]
            lam = np.array(g["eigenvalues"], dtype=float)
            diff = np.max(np.abs(lam - np.array(ref))) / max(ref[0], 1e-300)
            print(f"| {name} | {statistics.median(s[0] for s in samples):.3f} | "
                  f"{statistics.median(s[1] for s in samples) / 1e6:.1f} | {g.get('method', '-')} | "
                  f"{g.get('refined_from', '') or '-'} | {res['jacobian']['rank']} | {g['rank']} | {diff:.1e} |")
        fastest = min(statistics.median(s[0] for s in rows[m]) for m in ("gram", "svd"))
        auto = statistics.median(s[0] for s in rows["auto"])
        print(f"\nauto / fastest explicit method = {auto / fastest:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
