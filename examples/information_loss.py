#!/usr/bin/env python3
"""Information loss: dead ReLUs and bottleneck layers lower rank(G).

rank(G) counts the independent directions in which the parameters can move the predictions on
the data. Two ways a network throws some of that away:
  * dead ReLUs: a hidden unit that is inactive on every input has zero gradient for its incoming
    weights and bias and for its outgoing weights — those columns of G are zero. Same
    architecture, same N, lower rank.
  * a bottleneck: a narrow linear layer (width b) between two wide layers: the signal passes
    through b numbers per input, and consecutive linear maps have a GL(b) symmetry (b² directions
    that change nothing), so rank(G) <= N − b².

    python3 examples/information_loss.py [--server HOST:PORT] [--small]
"""
import numpy as np

from _example_common import basin, client, init_params, parser


def layer_offsets(model):
    """(weight offset, bias offset, out, in) of each dense layer in the parameter vector."""
    offs, pos, width = [], 0, model.input_dim
    for layer in model.layers:
        if layer["type"] == "dense":
            out = int(layer["out"])
            offs.append((pos, pos + out * width, out, width))
            pos += out * width + out
            width = out
    return offs


def main():
    p = parser(__doc__)
    args = p.parse_args()
    d_in, k = 4, 3
    width = 8 if args.small else 16
    rng = np.random.default_rng(args.seed)
    c = client(args)

    # --- dead ReLUs ------------------------------------------------------------------------
    relu = basin.Sequential(d_in, [{"type": "dense", "out": width}, {"type": "relu"},
                                   {"type": "dense", "out": width}, {"type": "relu"},
                                   {"type": "dense", "out": k}])
    theta = init_params(relu, rng, bias_scale=0.1)
    N = relu.num_params
    n = -(-2 * N // k)               # n·k >= 2N: the rank is limited by the network, not the data
    X = rng.normal(size=(n, d_in))
    (w1, b1, _, _), _, _ = layer_offsets(relu)
    print(f"dead ReLUs: {d_in} -> {width} -> relu -> {width} -> relu -> {k}, N = {N}, "
          f"n = {n}, n·k = {n * k}")
    print(f"{'dead units (layer 1)':>20} {'rank(G)':>8} {'N-rank':>7} {'drop':>5}")
    base_rank = None
    for dead in range(0, width // 2 + 1, max(1, width // 8)):
        th = theta.copy()
        th[b1:b1 + dead] = -1e3        # pre-activation < 0 for every input: the unit is dead
        r = c.analyze(relu.with_params(th), X, loss="none", want=("jacobian",))
        base_rank = r.jacobian.rank if base_rank is None else base_rank
        print(f"{dead:>20} {r.jacobian.rank:>8} {r.jacobian.level_set_dim:>7} "
              f"{base_rank - r.jacobian.rank:>5}")
    per_unit = d_in + 1 + width
    print(f"a dead first-layer unit zeroes {d_in}+1 incoming and {width} outgoing columns of G "
          f"({per_unit}); it also loses its scaling symmetry, so about {per_unit - 1} per unit")

    # --- bottleneck ------------------------------------------------------------------------
    widths = [None, 1, 2, 4] if args.small else [None, 1, 2, 4, 8]
    print(f"\nbottleneck: {d_in} -> {width} -> tanh -> [dense(b)] -> {width} -> tanh -> {k}, "
          f"n = {n}, n·k = {n * k}")
    print(f"{'b':>5} {'N':>6} {'rank(G)':>8} {'N-rank':>7} {'N - b^2':>8} {'min(nk,N)':>10}")
    rows = []
    for b in widths:
        layers = [{"type": "dense", "out": width}, {"type": "tanh"}]
        if b is not None:
            layers.append({"type": "dense", "out": b})      # linear bottleneck
        layers += [{"type": "dense", "out": width}, {"type": "tanh"}, {"type": "dense", "out": k}]
        m = basin.Sequential(d_in, layers)
        m.params = init_params(m, np.random.default_rng(args.seed + 1))
        r = c.analyze(m, X, loss="none", want=("jacobian",))
        bound = "-" if b is None else str(m.num_params - b * b)
        rows.append((b, m.num_params, r.jacobian.rank))
        print(f"{'none' if b is None else b:>5} {m.num_params:>6} {r.jacobian.rank:>8} "
              f"{r.jacobian.level_set_dim:>7} {bound:>8} {min(n * k, m.num_params):>10}")
    base = rows[0]
    print(f"without a bottleneck: rank(G) = {base[2]} of N = {base[1]}. With one, N - rank(G) "
          f"(directions that change no prediction; the GL(b) symmetry accounts for b²): " +
          ", ".join(f"b={b}: {nn - rk} (b² = {b * b})" for b, nn, rk in rows[1:]))


if __name__ == "__main__":
    main()
