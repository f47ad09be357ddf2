"""The example scripts run (--small) against the live server and write their plots."""
import os
import subprocess

import numpy as np
import pytest

import basin
from conftest import EXAMPLES, PKG, PY

EXAMPLES_WITH_PLOT = {"behaviour_manifold": True, "mse_minimum": True, "cross_entropy": False,
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


def test_hessian_plot_cuts_by_magnitude(tmp_path):
    """An indefinite H: the rank counts |λ| > tolerance, so the plotted order is by |λ| and the
    cut line separates exactly the values above the tolerance from those below."""
    pytest.importorskip("matplotlib")
    from basin.plot import plot_spectrum
    from basin.result import HessianSpectrum
    values = np.array([3.0, 1.0, 1e-16, -1e-15, -0.5, -2.0])  # descending, as the engine gives them
    h = HessianSpectrum(values, rank=4, tolerance=1e-10, residual_rel=0.5, residual_eigenvalues=values)
    fig = plot_spectrum(h, path=str(tmp_path / "h.png"))
    ax = fig.axes[0]
    shown = ax.lines[0].get_ydata()
    assert list(shown[:4]) == [3.0, 2.0, 1.0, 0.5]  # the four with |λ| > tolerance come first
    assert np.all(shown[4:] < 1e-10)
    cut = [ln for ln in ax.lines if ln.get_label().startswith("rank")][0]
    assert cut.get_xdata()[0] == 4.5
    negatives = [ln for ln in ax.lines if ln.get_label().startswith("negative")][0]
    assert sorted(negatives.get_xdata()) == [2, 4, 5]  # -2.0, -0.5, -1e-15 at their |λ| places
