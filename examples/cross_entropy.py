#!/usr/bin/env python3
"""Cross-entropy: the Hessian is not a multiple of GᵀG.

For cross-entropy the Gauss-Newton part is Gᵀ M G with M_i = (diag p_i − p_i p_iᵀ)/n per example,
not a multiple of the identity, and the residual term Σ r_ic ∇²f_c (r = (p − y)/n) does not
vanish at a finite minimum. How well does H ≈ c·GᵀG hold at all?

What the contract returns: the spectra of G, GGN and H, eig(H − GGN) (the residual term), the
outputs, and G itself (return_jacobian). The Hessian matrix is not returned, so:
  * GGN = Σ_i G_iᵀ M_i G_i is rebuilt exactly here from G and the outputs (checked against the
    server's GGN eigenvalues), and c_GGN, |GGN − c·GᵀG|_F/|GGN|_F are exact.
  * For H = GGN + R only ⟨R, GᵀG⟩ is unknown. Von Neumann's trace inequality bounds it by the
    returned spectra: Σ ρ↑_i s↓_i <= ⟨R, GᵀG⟩ <= Σ ρ↓_i s↓_i (ρ = eig(R), s = eig(GᵀG) = σ²).
    That gives an interval for the best c = ⟨H, GᵀG⟩/|GᵀG|² and for
    min_c |H − c·GᵀG|_F/|H|_F = sqrt(1 − ⟨H, GᵀG⟩²/(|H|²|GᵀG|²)), with |H|_F² = Σ λ_H².
  * Independently, Hoffman–Wielandt gives a lower bound from the sorted spectra alone:
    |H − c·GᵀG|_F >= |λ↓(H) − c·s↓|, minimised over c.

    python3 examples/cross_entropy.py [--server HOST:PORT] [--small]
"""
import os

import numpy as np

from _example_common import HERE, basin, client, parser


def main():
    p = parser(__doc__)
    p.add_argument("--show", type=int, default=6)
    args = p.parse_args()
    data = os.path.join(HERE, "data")
    model = basin.Sequential.from_json(os.path.join(data, "classification_model.json"),
                                       np.load(os.path.join(data, "classification_params.npy")))
    X = np.load(os.path.join(data, "classification_X.npy"))
    labels = np.load(os.path.join(data, "classification_labels.npy"))
    if args.small:
        X, labels = X[::3], labels[::3]
    n = X.shape[0]
    c = client(args)
    r = c.analyze(model, X, labels, loss="cross_entropy", want=("jacobian", "ggn", "hessian"),
                  return_jacobian=True)
    N, k = r.num_params, r.num_outputs
    G = r.jacobian_matrix                      # [n·k, N], rows (i, c)
    GtG = G.T @ G
    s = np.linalg.eigvalsh(GtG)[::-1]          # σ(G)², N values
    z = r.outputs - r.outputs.max(axis=1, keepdims=True)
    P = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    ggn = np.zeros((N, N))
    for i in range(n):
        Gi = G[i * k:(i + 1) * k]
        Mi = (np.diag(P[i]) - np.outer(P[i], P[i])) / n
        ggn += Gi.T @ Mi @ Gi
    ggn_eig = np.linalg.eigvalsh(ggn)[::-1]
    m = r.ggn.eigenvalues.size
    ggn_check = np.max(np.abs(ggn_eig[:m] - r.ggn.eigenvalues)) / r.ggn.eigenvalues[0]

    print(f"model {model}, n = {n}, k = {k}; cross-entropy = {r.loss:.4g}, "
          f"|grad| = {r.grad_norm:.3g}")
    print(f"rank(G) = {r.jacobian.rank}, rank(GGN) = {r.ggn.rank}, rank(H) = {r.hessian.rank}, "
          f"|H - GGN|_F/|H|_F = {r.hessian.residual_rel:.3g}")
    print(f"GGN rebuilt from G and softmax(outputs) matches the server's eigenvalues to "
          f"{ggn_check:.1e} (relative)")

    # Exact: how far is the GGN itself from a multiple of GᵀG?
    gg2 = np.sum(GtG * GtG)
    c_ggn = np.sum(ggn * GtG) / gg2
    rel_ggn = np.linalg.norm(ggn - c_ggn * GtG) / np.linalg.norm(ggn)
    print(f"\nGGN ~ c*GtG (exact):  best c = {c_ggn:.4g}   |GGN - c*GtG|_F/|GGN|_F = {rel_ggn:.3f}")

    # The Hessian: ⟨H, GᵀG⟩ = ⟨GGN, GᵀG⟩ + ⟨R, GᵀG⟩, the last bounded by von Neumann.
    lam = r.hessian.eigenvalues
    rho = np.sort(r.hessian.residual_eigenvalues)[::-1]
    h2 = np.sum(lam ** 2)
    base = np.sum(ggn * GtG)
    lo, hi = base + np.dot(rho[::-1], s), base + np.dot(rho, s)
    cs = (lo / gg2, hi / gg2)
    rels = [np.sqrt(max(0.0, 1 - ip ** 2 / (h2 * gg2))) for ip in (lo, hi)]
    mid = base / gg2
    print(f"H ~ c*GtG:            best c in [{cs[0]:.4g}, {cs[1]:.4g}] (residual term ignored: "
          f"{mid:.4g})")
    print(f"                      min_c |H - c*GtG|_F/|H|_F in [{min(rels):.3f}, {max(rels):.3f}]")
    s_pad = np.concatenate([s, np.zeros(max(0, lam.size - s.size))])[:lam.size]
    c_hw = np.dot(lam, s_pad) / np.dot(s_pad, s_pad)
    hw = np.linalg.norm(lam - c_hw * s_pad) / np.sqrt(h2)
    print(f"Hoffman-Wielandt:     |H - c*GtG|_F/|H|_F >= {hw:.3f} for every c "
          f"(spectra alone; minimised at c = {c_hw:.4g})")
    print("for comparison, MSE at an interpolating minimum gives c = 2/(n·k) exactly and 0")

    show = args.show
    print(f"\n{'i':>3} {'eig(H)':>12} {'eig(GGN)':>12} {'sigma(G)^2':>12} {'eig(H)/sigma^2':>15}")
    for i in range(show):
        print(f"{i + 1:>3} {lam[i]:>12.5g} {r.ggn.eigenvalues[i]:>12.5g} {s[i]:>12.5g} "
              f"{lam[i] / s[i]:>15.4g}")
    print(f"smallest eig(H): {' '.join(f'{v:.3g}' for v in lam[-3:])}  (negative: the residual "
          "term is indefinite)")


if __name__ == "__main__":
    main()
