"""The example scripts run (--small) against the live server and write their plots."""
import os
import subprocess

import numpy as np
import pytest

import basin
from conftest import EXAMPLES, PKG, PY

EXAMPLES_WITH_PLOT = {"behaviour_manifold": True, "mse_minimum": False, "cross_entropy": False,
                      "information_loss": False, "checkpoints": True}


@pytest.mark.parametrize("name", sorted(EXAMPLES_WITH_PLOT))
def test_example_runs(server, tmp_path, name):
    if name == "checkpoints":
        pytest.importorskip("torch")
    args = [PY, os.path.join(EXAMPLES, name + ".py"), "--small", "--server", server.address]
    png = os.path.join(tmp_path, name + ".png")
    if EXAMPLES_WITH_PLOT[name]:
        args += ["--plot", png]
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLBACKEND"] = "Agg"
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip()
    if EXAMPLES_WITH_PLOT[name]:
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    if name == "mse_minimum":
        assert "|H - GGN|_F/|H|_F = 0" in out.stdout


def test_plot_functions(client, tmp_path):
    pytest.importorskip("matplotlib")
    from basin.plot import plot_checkpoints, plot_spectrum
    m = basin.Sequential(2, [{"type": "dense", "out": 5}, {"type": "relu"},
                             {"type": "dense", "out": 1}])
    P = np.random.default_rng(0).normal(size=(3, m.num_params))
    X = np.random.default_rng(1).normal(size=(30, 2))
    rs = client.analyze(m.with_params(P), X, np.zeros((30, 1)))
    for i, path in enumerate([tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]):
        arg = [rs[0], rs[0].hessian, rs[0].jacobian.singular_values][i]
        plot_spectrum(arg, path=str(path), which="ggn" if i == 0 else None)
        assert path.read_bytes()[:4] == b"\x89PNG"
    plot_checkpoints(rs, path=str(tmp_path / "d.png"))
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
