"""The N ≈ 10⁷ MLP of issue 12's CPU benchmark: 1000 → 4000 → 1500 → 10 (tanh), n = 64, cross-entropy."""
import json, sys
import numpy as np

out = sys.argv[1]
rng = np.random.default_rng(0)
model = {"input_dim": 1000, "layers": [{"type": "dense", "out": 4000}, {"type": "tanh"},
                                       {"type": "dense", "out": 1500}, {"type": "tanh"},
                                       {"type": "dense", "out": 10}]}
sizes = [(1000, 4000), (4000, 1500), (1500, 10)]
params = []
for d_in, d_out in sizes:  # PyTorch order: weight [out, in], then bias
    params.append(rng.standard_normal(d_out * d_in) / np.sqrt(d_in))
    params.append(np.zeros(d_out))
theta = np.concatenate(params)
json.dump(model, open(f"{out}/big_model.json", "w"))
np.save(f"{out}/big_params.npy", theta)
np.save(f"{out}/big_X.npy", rng.standard_normal((64, 1000)))
np.save(f"{out}/big_y.npy", rng.integers(0, 10, 64).astype(np.int64))
print("N =", theta.size)
