#!/usr/bin/env python3
"""Checkpoints: spectra across a short training run, all checkpoints in ONE request.

Trains a small tanh MLP on y = sin(3x) with Adam (PyTorch, float64), keeps the parameter vector
(parameters_to_vector order) every few steps, and sends the stack [B, N] as one Analyze request:
the server returns one Result per checkpoint. Prints the top Hessian eigenvalues, rank(G) and
rank(H) per checkpoint, and plots them.

    python3 examples/checkpoints.py [--server HOST:PORT] [--small] [--plot checkpoints.png]
"""
import numpy as np

from _example_common import basin, client, parser, plot_path


def main():
    p = parser(__doc__)
    p.add_argument("--plot", default=None, help="PNG path (default checkpoints.png)")
    args = p.parse_args()
    import torch
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    width, n, steps, every = (8, 24, 150, 15) if args.small else (16, 48, 600, 50)
    X = torch.linspace(-1, 1, n, dtype=torch.float64).reshape(n, 1)
    Y = torch.sin(3 * X)
    net = torch.nn.Sequential(torch.nn.Linear(1, width), torch.nn.Tanh(),
                              torch.nn.Linear(width, width), torch.nn.Tanh(),
                              torch.nn.Linear(width, 1)).double()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    checkpoints, step_ids, losses = [], [], []
    for step in range(steps + 1):
        if step % every == 0:
            checkpoints.append(torch.nn.utils.parameters_to_vector(net.parameters())
                               .detach().numpy().copy())
            step_ids.append(step)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(X), Y)
        if step % every == 0:
            losses.append(loss.item())
        loss.backward()
        opt.step()

    model = basin.from_torch(net).with_params(np.stack(checkpoints))   # [B, N]
    c = client(args)
    results = c.analyze(model, X.numpy(), Y.numpy(), loss="mse",
                        want=("jacobian", "ggn", "hessian"))          # one request, B results
    print(f"model {model}; n = {n}; {len(results)} checkpoints in one request")
    print(f"{'step':>5} {'torch loss':>11} {'basin loss':>11} {'rank(G)':>8} {'rank(H)':>8} "
          f"{'|H-GGN|/|H|':>12}   top eig(H)")
    for s, l, r in zip(step_ids, losses, results):
        top = " ".join(f"{v:9.4g}" for v in r.hessian.eigenvalues[:3])
        print(f"{s:>5} {l:>11.4e} {r.loss:>11.4e} {r.jacobian.rank:>8} {r.hessian.rank:>8} "
              f"{r.hessian.residual_rel:>12.3e}   {top}")
    path = plot_path(args, "checkpoints.png")
    if path:
        from basin.plot import plot_checkpoints
        plot_checkpoints(results, path=path, top=4, steps=step_ids,
                         title="Hessian top eigenvalues and ranks during training")
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
