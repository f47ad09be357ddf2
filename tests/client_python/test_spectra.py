"""Matrix-free spectra through the Python client (issue 12): the engine's smoothed density on a
grid (Result.hessian_density["grid"/"density"], what basin.plot draws), and a running job's
Job.stage_detail showing the Lanczos iteration."""
import re
import time

import numpy as np

import basin
from basin.plot import density_on_grid, plot_density


def mlp(rng, d_in, hidden, k):
    m = basin.Sequential(d_in, [{"type": "dense", "out": hidden}, {"type": "tanh"},
                                {"type": "dense", "out": k}])
    m.params = rng.normal(size=m.num_params) * 0.5
    return m


def test_density_grid_integrates_to_one_with_the_slq_mean(client, tmp_path):
    rng = np.random.default_rng(4)
    m = mlp(rng, 5, 12, 3)
    X = rng.normal(size=(16, 5))
    y = rng.integers(0, 3, size=16)
    r = client.analyze(m, X, y, loss="cross_entropy", want=["hessian_density", "hessian"],
                       spectra={"probes": 12, "lanczos_steps": 15, "method": "matrix_free"})
    d = r.hessian_density
    grid, phi = np.asarray(d["grid"]), np.asarray(d["density"])
    assert grid.shape == phi.shape == (400,)
    assert np.all(np.diff(grid) > 0) and np.all(phi >= 0)
    assert abs(np.trapz(phi, grid) - 1) < 1e-5
    slq_mean = np.mean([np.dot(w, t) for t, w in zip(d["nodes"], d["weights"])])
    span = max(abs(grid[0]), abs(grid[-1]))
    assert abs(np.trapz(grid * phi, grid) - slq_mean) < 1e-5 * span
    # The exact spectrum's mean tr(H)/N, within the probes' standard error.
    m1 = np.array([np.dot(w, t) for t, w in zip(d["nodes"], d["weights"])])
    se = m1.std(ddof=1) / np.sqrt(len(m1))
    assert abs(slq_mean - r.hessian.eigenvalues.mean()) < 4 * se + 1e-12
    # basin.plot: the engine's grid as it is; another sigma recomputes it from the nodes.
    g2, p2 = density_on_grid(d)
    assert np.array_equal(g2, grid) and np.array_equal(p2, phi)
    g3, p3 = density_on_grid(d, sigma=d["bandwidth"], grid=grid)
    np.testing.assert_allclose(p3, phi, rtol=1e-9, atol=1e-12 * phi.max())
    import matplotlib
    matplotlib.use("Agg")
    path = tmp_path / "density.png"
    plot_density(r, "hessian", path=str(path))
    assert path.stat().st_size > 0


def test_running_job_shows_its_lanczos_iteration(client):
    rng = np.random.default_rng(5)
    m = mlp(rng, 40, 200, 10)  # N = 10,210: matrix-free, hundreds of iterations at tol 1e-12
    X = rng.normal(size=(48, 40))
    y = rng.integers(0, 10, size=48)
    job = client.submit(m, X, y, loss="cross_entropy", want=["hessian_top"],
                        spectra={"top_k": 6, "bottom_k": 2, "tol": 1e-12})
    seen = []
    while not job.refresh().done:
        if job.stage == "lanczos":
            seen.append(job.stage_detail)
        time.sleep(0.005)
    assert job.state == "succeeded"
    assert job.stage_detail == ""
    assert seen, "no snapshot of the running job showed its Lanczos iteration"
    counts = []
    for line in seen:
        match = re.fullmatch(r"lanczos (\d+)/(\d+)( \(.*\))?", line)
        assert match, line
        assert int(match[1]) <= int(match[2])
        counts.append(int(match[1]))
    assert counts == sorted(counts)
    assert "stage_detail" not in repr(job)  # finished: no detail shown
    assert len(job.result().hessian_top["eigenvalues"]) == 6
