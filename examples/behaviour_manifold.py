#!/usr/bin/env python3
"""Behaviour manifold: rank(G) and N − rank(G) as the number of data points n grows.

G is the per-example Jacobian (one row per example and output, one column per parameter). Near
θ, the parameters that leave every prediction f(x_i) unchanged form a manifold of dimension
N − rank(G). Adding data adds rows to G, but the rank stops growing below N: a ReLU network has
a continuous symmetry per hidden unit (scale its incoming weights and bias by a > 0 and its
outgoing weights by 1/a), so rank(G) <= N − (number of hidden ReLU units) however much data
there is; and on inputs from a bounded box the network is linear on finitely many regions, each
contributing only a few directions, so the rank saturates well below that bound. A tanh network
of the same shape has no continuous symmetry (only sign flips) and reaches rank N.

    python3 examples/behaviour_manifold.py [--server HOST:PORT] [--small] [--plot out.png]
"""
import numpy as np

from _example_common import basin, client, init_params, parser, plot_path


def main():
    p = parser(__doc__)
    p.add_argument("--plot", default=None, help="PNG path (default behaviour_manifold.png)")
    args = p.parse_args()
    width = 6 if args.small else 12
    ns = ([4, 16, 64, 128, 256, 512, 1024] if args.small
          else [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096])
    rng = np.random.default_rng(args.seed)
    c = client(args)

    rows = {}
    for act in ("relu", "tanh"):
        layers = [{"type": "dense", "out": width}, {"type": act},
                  {"type": "dense", "out": width}, {"type": act}, {"type": "dense", "out": 1}]
        model = basin.Sequential(2, layers)
        model.params = init_params(model, np.random.default_rng(args.seed), bias_scale=0.5)
        X_all = rng.uniform(-1, 1, size=(max(ns), 2))
        rows[act] = []
        for n in ns:
            r = c.analyze(model, X_all[:n], loss="none", want=("jacobian",))
            rows[act].append((n, r.jacobian.rank, r.jacobian.level_set_dim, r.jacobian.gap))
    N = model.num_params
    hidden = 2 * width
    print(f"model 2 -> {width} -> act -> {width} -> act -> 1, N = {N} parameters, "
          f"{hidden} hidden units; inputs uniform in [-1, 1]^2")
    print(f"{'n':>5} {'n*k':>5} | {'rank relu':>9} {'N-rank':>6} | {'rank tanh':>9} {'N-rank':>6}")
    for (n, rr, dr, _), (_, rt, dt, _) in zip(rows["relu"], rows["tanh"]):
        print(f"{n:>5} {n:>5} | {rr:>9} {dr:>6} | {rt:>9} {dt:>6}")
    rmax = max(r[1] for r in rows["relu"])
    last = [r[1] for r in rows["relu"]][-3:]
    print(f"relu: rank(G) levels off at {rmax} (last three sizes: {last}) <= N - #hidden = "
          f"{N - hidden} < N = {N}; the behaviour manifold keeps dimension {N - rmax}")
    tmax = max(r[1] for r in rows["tanh"])
    print(f"tanh: rank reaches {tmax} of N = {N}")

    path = plot_path(args, "behaviour_manifold.png")
    if path:
        from basin.plot import _pyplot
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        x = np.array(ns)
        ax.plot(x, [r[1] for r in rows["relu"]], "o-", label="rank(G), ReLU")
        ax.plot(x, [r[1] for r in rows["tanh"]], "s-", label="rank(G), tanh")
        ax.plot(x, np.minimum(x, N), ":", color="gray", label="min(n·k, N)")
        ax.axhline(N, color="k", ls="--", lw=0.8, label=f"N = {N}")
        ax.axhline(N - hidden, color="tab:red", ls="--", lw=0.8,
                   label=f"N − #hidden ReLU units = {N - hidden}")
        ax.set_xscale("log")
        ax.set_xlabel("n (data points, k = 1)")
        ax.set_ylabel("rank of the per-example Jacobian")
        ax.set_title("Behaviour manifold dimension = N − rank(G)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
