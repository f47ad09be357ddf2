"""Regenerates the small models and data sets in examples/data (checked in; run only to change them).

regression:      2 -> 16 -> tanh -> 16 -> tanh -> 1, fitted to y = sin(x0)·cos(x1) on 48 points
classification:  2 -> 12 -> gelu -> 3 logits, fitted to three Gaussian blobs (cross-entropy)
Parameters are PyTorch's parameters_to_vector of the equivalent nn.Sequential.
"""
import json
import pathlib

import numpy as np
import torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
out = pathlib.Path(__file__).resolve().parent / "data"
out.mkdir(exist_ok=True)
rng = np.random.default_rng(0)


def fit(net, X, Y, loss_fn, steps):
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(net(X), Y)
        loss.backward()
        opt.step()
    return loss.item()


# Regression
X = rng.uniform(-2, 2, size=(48, 2))
Y = (np.sin(X[:, 0]) * np.cos(X[:, 1]))[:, None]
net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                          torch.nn.Linear(16, 1))
loss = fit(net, torch.tensor(X), torch.tensor(Y), torch.nn.functional.mse_loss, 3000)
print("regression final mse", loss)
json.dump({"input_dim": 2, "layers": [{"type": "dense", "out": 16}, {"type": "tanh"}, {"type": "dense", "out": 16},
                                      {"type": "tanh"}, {"type": "dense", "out": 1}]},
          open(out / "regression_model.json", "w"), indent=1)
np.save(out / "regression_params.npy", torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy())
np.save(out / "regression_X.npy", X)
np.save(out / "regression_Y.npy", Y)

# Classification
centers = np.array([[0.0, 2.0], [-1.7, -1.0], [1.7, -1.0]])
labels = np.repeat(np.arange(3), 20)
X = centers[labels] + rng.normal(scale=0.9, size=(60, 2))
net = torch.nn.Sequential(torch.nn.Linear(2, 12), torch.nn.GELU(), torch.nn.Linear(12, 3))
loss = fit(net, torch.tensor(X), torch.tensor(labels), torch.nn.functional.cross_entropy, 500)
print("classification final cross-entropy", loss)
json.dump({"input_dim": 2, "layers": [{"type": "dense", "out": 12}, {"type": "gelu"}, {"type": "dense", "out": 3}]},
          open(out / "classification_model.json", "w"), indent=1)
np.save(out / "classification_params.npy", torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy())
np.save(out / "classification_X.npy", X)
np.save(out / "classification_labels.npy", labels.astype(np.int64))
