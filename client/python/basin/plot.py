"""Plots of Basin spectra (matplotlib, imported lazily with the Agg backend; optional).

    from basin.plot import plot_spectrum, plot_checkpoints
    plot_spectrum(result, path="sigma.png")           # σ(G) on a log scale, rank cut marked
    plot_checkpoints(results, path="checkpoints.png")  # top eigenvalues and rank per checkpoint
    plot_density(result, "hessian", path="density.png")  # SLQ density (want hessian_density)
"""
import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover
        raise ImportError("basin.plot needs matplotlib (Debian: apt-get install "
                          "python3-matplotlib; pip install matplotlib)") from e
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        try:
            matplotlib.use("Agg")
        except Exception:
            pass
    import matplotlib.pyplot as plt
    return plt


def _spectrum_of(obj, which):
    """(values, rank, tolerance, label) from a Result, a spectrum object, or an array."""
    from .result import Result
    if isinstance(obj, Result):
        if which is None:
            which = next(w for w in ("jacobian", "ggn", "hessian") if getattr(obj, w) is not None)
        obj = getattr(obj, which)
        if obj is None:
            raise ValueError(f"the result has no {which} spectrum")
    if hasattr(obj, "singular_values"):
        return np.asarray(obj.singular_values), obj.rank, obj.tolerance, "σ(G)"
    if hasattr(obj, "eigenvalues"):
        label = "eig(H)" if hasattr(obj, "residual_rel") else "eig(GGN)"
        return np.asarray(obj.eigenvalues), obj.rank, obj.tolerance, label
    return np.asarray(obj, dtype=np.float64).ravel(), None, None, "value"


def plot_spectrum(result_or_values, rank=None, tolerance=None, path=None, which=None, ax=None,
                  title=None, label=None):
    """Plots a spectrum on a log scale: magnitudes |λ| in descending order, negative values
    marked, and the rank cut (a vertical line after the rank-th value; a horizontal line at the
    tolerance). Ordering by |λ| is what makes the cut a line: the rank counts the values with
    |λ| > tolerance, which for an indefinite Hessian are the largest and the most negative, so in
    the list's own (signed) order they are not the first `rank` ones. `result_or_values`: a Result (its Jacobian spectrum, or `which` = "ggn" /
    "hessian"), a spectrum object, or an array. Saves a PNG when `path` is given; returns the
    matplotlib Figure."""
    plt = _pyplot()
    values, r, tol, default_label = _spectrum_of(result_or_values, which)
    rank = r if rank is None else rank
    tolerance = tol if tolerance is None else tolerance
    values = values[np.argsort(-np.abs(values), kind="stable")] if values.size else values
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    idx = np.arange(1, values.size + 1)
    mag = np.abs(values)
    floor = mag[mag > 0].min() * 0.1 if np.any(mag > 0) else 1e-300
    shown = np.where(mag > 0, mag, floor)
    ax.semilogy(idx, shown, ".-", ms=3, lw=0.8, label=label or default_label)
    neg = values < 0
    if np.any(neg):
        ax.semilogy(idx[neg], shown[neg], "x", color="tab:red", ms=4, label="negative (|λ| shown)")
    if rank is not None:
        ax.axvline(rank + 0.5, color="k", ls="--", lw=0.8, label=f"rank = {rank}")
    if tolerance:
        ax.axhline(tolerance, color="gray", ls=":", lw=0.8, label=f"tolerance = {tolerance:.2g}")
    ax.set_xlabel("index (by magnitude)")
    ax.set_ylabel("magnitude")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    if path is not None and own:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def plot_checkpoints(results, path=None, top=5, which=None, steps=None, title=None):
    """Top `top` eigenvalues (Hessian if present, else GGN, else σ(G); or `which`) and the ranks
    of G / GGN / H across checkpoints. `steps`: x values (default 0..B-1). Saves a PNG when
    `path` is given; returns the Figure."""
    plt = _pyplot()
    results = list(results)
    if not results:
        raise ValueError("plot_checkpoints: no results")
    if which is None:
        which = next(w for w in ("hessian", "ggn", "jacobian") if getattr(results[0], w) is not None)
    x = np.arange(len(results)) if steps is None else np.asarray(steps)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    tops = []
    for r in results:
        v, _, _, lab = _spectrum_of(r, which)
        v = np.sort(v)[::-1][:top]
        tops.append(np.pad(v, (0, top - v.size), constant_values=np.nan))
    tops = np.array(tops)
    for j in range(top):
        a1.semilogy(x, np.abs(tops[:, j]), "o-", ms=3, label=f"{lab} #{j + 1}")
    a1.set_xlabel("step" if steps is not None else "checkpoint")
    a1.set_ylabel("eigenvalue" if which != "jacobian" else "singular value")
    a1.set_title(f"top {top} {lab}")
    a1.legend(fontsize=7)
    a1.grid(True, which="both", alpha=0.2)
    for w, lab in (("jacobian", "rank(G)"), ("ggn", "rank(GGN)"), ("hessian", "rank(H)")):
        if all(getattr(r, w) is not None for r in results):
            a2.plot(x, [getattr(r, w).rank for r in results], "o-", ms=3, label=lab)
    a2.axhline(results[0].num_params, color="k", ls="--", lw=0.8, label="N")
    a2.set_xlabel("step" if steps is not None else "checkpoint")
    a2.set_ylabel("rank")
    a2.legend(fontsize=7)
    a2.grid(True, alpha=0.2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def density_on_grid(density, grid=None, sigma=None, points=400):
    """The smoothed spectral density of an SLQ result (a Result's hessian_density / ggn_density
    dict, or the CLI JSON's object): (grid, φ) with φ(t) = mean over probes of
    Σ_j w_j · N(t; θ_j, σ²), Gaussian kernels of width σ (default 1% of the nodes' span).
    With the defaults it is the engine's own "grid" / "density" where the result has them;
    another grid, sigma or number of points recomputes it here from the nodes and weights."""
    if grid is None and sigma is None and points == 400 and len(density.get("grid", ())) > 0:
        return (np.asarray(density["grid"], dtype=np.float64),
                np.asarray(density["density"], dtype=np.float64))
    nodes = [np.asarray(v, dtype=np.float64) for v in density["nodes"]]
    weights = [np.asarray(v, dtype=np.float64) for v in density["weights"]]
    allv = np.concatenate(nodes) if nodes else np.zeros(1)
    lo, hi = float(allv.min()), float(allv.max())
    span = max(hi - lo, 1e-12)
    sigma = 0.01 * span if sigma is None else float(sigma)
    if grid is None:
        grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, points)
    grid = np.asarray(grid, dtype=np.float64)
    phi = np.zeros_like(grid)
    for th, w in zip(nodes, weights):
        phi += (w[None, :] * np.exp(-0.5 * ((grid[:, None] - th[None, :]) / sigma) ** 2)).sum(axis=1)
    phi /= max(len(nodes), 1) * sigma * np.sqrt(2 * np.pi)
    return grid, phi


def plot_density(result_or_density, which="hessian", path=None, sigma=None, ax=None, title=None):
    """Draws the SLQ spectral density (want hessian_density / ggn_density) on a log scale, from a
    Result (its `which`_density) or a density dict. Saves a PNG when `path` is given; returns the
    matplotlib Figure."""
    plt = _pyplot()
    d = result_or_density
    if not isinstance(d, dict):
        d = getattr(d, f"{which}_density")
        if d is None:
            raise ValueError(f"the result has no {which}_density (want {which}_density)")
    grid, phi = density_on_grid(d, sigma=sigma)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    ax.semilogy(grid, np.maximum(phi, 1e-12))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(title or f"{which} spectral density (SLQ, {d['probes']} probes × {d['steps']} steps)")
    if path:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
