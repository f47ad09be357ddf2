#!/usr/bin/env python3
"""MSE at an interpolating minimum: the Hessian is exactly its Gauss-Newton part.

With L = mean over n·k entries of (f − y)², H = (2/(n·k))·GᵀG + Σ r_ic ∇²f_c with residuals
r = (2/(n·k))(f − y). Take targets equal to the model's own outputs (an interpolating solution,
r = 0): the residual term vanishes and eig(H) = (2/(n·k))·σ(G)², printed side by side. Moving θ
away from that minimum (targets fixed) makes the residual term grow.

    python3 examples/mse_minimum.py [--server HOST:PORT] [--small] [--plot mse_minimum.png]
"""
import numpy as np

from _example_common import basin, client, init_params, parser, plot_path


def main():
    p = parser(__doc__)
    p.add_argument("--show", type=int, default=8, help="eigenvalues printed side by side")
    p.add_argument("--plot", default=None,
                   help="PNG of eig(H) beside (2/(n·k))·σ(G)² at the minimum (default mse_minimum.png; '' for none)")
    args = p.parse_args()
    width, n = (6, 8) if args.small else (12, 24)
    k = 2
    rng = np.random.default_rng(args.seed)
    model = basin.Sequential(3, [{"type": "dense", "out": width}, {"type": "tanh"},
                                 {"type": "dense", "out": width}, {"type": "tanh"},
                                 {"type": "dense", "out": k}])
    theta = init_params(model, rng)
    model.params = theta
    X = rng.normal(size=(n, 3))
    c = client(args)

    # Targets = the model's outputs at θ: θ interpolates the data, every residual is 0.
    Y = c.analyze(model, X, loss="none").outputs
    r = c.analyze(model, X, Y, loss="mse", want=("jacobian", "ggn", "hessian"))
    scale = 2.0 / (n * k)
    sigma2 = scale * r.jacobian.singular_values ** 2
    eig_h = r.hessian.eigenvalues
    m = min(args.show, sigma2.size)
    print(f"model 3 -> {width} -> tanh -> {width} -> tanh -> {k}, N = {r.num_params}, "
          f"n = {n}, n·k = {n * k}; loss = {r.loss:.3g}, |grad| = {r.grad_norm:.3g}")
    print(f"rank(G) = {r.jacobian.rank}, rank(H) = {r.hessian.rank}; "
          f"|H - GGN|_F/|H|_F = {r.hessian.residual_rel:.3g}")
    print(f"{'i':>3} {'eig(H)':>14} {'2/(nk)*sigma^2':>16} {'rel diff':>10}")
    for i in range(m):
        print(f"{i + 1:>3} {eig_h[i]:>14.8g} {sigma2[i]:>16.8g} "
              f"{abs(eig_h[i] - sigma2[i]) / abs(sigma2[i]):>10.2e}")
    rank = r.jacobian.rank
    tail = np.abs(eig_h[rank:]).max() if eig_h.size > rank else 0.0
    print(f"top {rank} eigenvalues: max relative difference "
          f"{np.max(np.abs(eig_h[:rank] - sigma2[:rank]) / sigma2[:rank]):.2e}; the other "
          f"{eig_h.size - rank} are ~0 (max |eig| {tail:.2e})")

    path = plot_path(args, "mse_minimum.png")
    if path:
        from basin.plot import plot_spectrum
        fig = plot_spectrum(r, which="hessian", title="MSE minimum: eig(H) and (2/(n·k))·σ(G)²")
        ax = fig.axes[0]
        ax.semilogy(np.arange(1, sigma2.size + 1), sigma2, "o", mfc="none", ms=5, color="tab:green",
                    label="(2/(n·k))·σ(G)²")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        print(f"plot: {path}")

    # Away from the minimum: θ + ε·u with |u| = |θ|, targets unchanged.
    u = rng.normal(size=theta.size)
    u *= np.linalg.norm(theta) / np.linalg.norm(u)
    print("\nmoving away from the minimum (targets fixed): theta + eps*u, |u| = |theta|")
    print(f"{'eps':>8} {'loss':>11} {'|H-GGN|/|H|':>12} {'max|eig(H-GGN)|':>16} {'eig_1(H)':>11} "
          f"{'2/(nk)*s1^2':>12}")
    for eps in (0.0, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1):
        rr = c.analyze(model.with_params(theta + eps * u), X, Y, loss="mse",
                       want=("jacobian", "ggn", "hessian"))
        res = np.abs(rr.hessian.residual_eigenvalues).max()
        print(f"{eps:>8.0e} {rr.loss:>11.3e} {rr.hessian.residual_rel:>12.3e} {res:>16.3e} "
              f"{rr.hessian.eigenvalues[0]:>11.5g} {scale * rr.jacobian.singular_values[0] ** 2:>12.5g}")


if __name__ == "__main__":
    main()
