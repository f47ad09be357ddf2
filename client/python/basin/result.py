"""Analysis results: dataclasses mirroring the CLI's JSON (`basin analyze --json`) field for
field, with numpy arrays for spectra. `Result.to_json()` prints the same JSON object."""
import io
import json
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


def _num(v):
    """A JSON number, or None for NaN/inf (the CLI writes null)."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _nums(a):
    return [_num(x) for x in np.asarray(a, dtype=np.float64).ravel()]


def _tensor_to_numpy(t):
    """basin.v1.Tensor -> numpy array (None when the message is absent or empty)."""
    if t is None or (len(t.shape) == 0 and not t.data):
        return None
    dtypes = {1: "<f4", 2: "<f8", 3: "<i4", 4: "<i8"}
    if t.dtype not in dtypes:
        raise ValueError(f"tensor with unknown dtype {t.dtype}")
    return np.frombuffer(t.data, dtype=dtypes[t.dtype]).reshape(tuple(t.shape)).copy()


def _provenance_from_proto(p):
    """basin.v1.Provenance -> the dict the CLI prints under "provenance" (less what the result
    itself supplies: dtype, backend, device and the spectra's tolerances, added by to_dict)."""
    return {"basin_version": p.basin_version, "commit": p.commit, "source_modified": bool(p.source_modified),
            "model_sha256": p.model_sha256, "params_sha256": p.params_sha256,
            "inputs_sha256": p.inputs_sha256, "targets_sha256": p.targets_sha256 or None,
            "host": p.host, "started_at": p.started_at, "duration_ms": float(p.duration_ms),
            "tolerance_rule": p.tolerance_rule,
            "rtol": p.rtol if p.HasField("rtol") else None, "atol": p.atol if p.HasField("atol") else None,
            "methods": dict(sorted(p.methods.items())), "seeds": {k: int(v) for k, v in sorted(p.seeds.items())}}


@dataclass
class RankBound:
    """What the architecture and data imply: measured rank <= rank_at_most, with the reason;
    exact when theory gives equality for generic parameters (deep linear networks)."""
    rank_at_most: int
    why: str
    exact: bool

    @classmethod
    def from_proto(cls, b):
        return cls(int(b.rank_at_most), b.why, bool(b.exact))

    def to_dict(self):
        return {"rank_at_most": int(self.rank_at_most), "why": self.why, "exact": bool(self.exact)}


def _bound_dict(d, bound):
    if bound is not None:
        d["bound"] = bound.to_dict()
    return d


@dataclass
class JacobianSpectrum:
    singular_values: np.ndarray   # all min(n·k, N), descending
    rank: int
    tolerance: float
    gap: Optional[float]          # σ_rank / σ_rank+1 at the cut (None when undefined)
    level_set_dim: int            # N − rank: dimension of the behaviour manifold
    method: str                   # "gram" | "normal" | "svd" | "tsqr" (SVD of G's blockwise QR factor)
    refined_from: Optional[str] = None  # auto's Gram method when it fell back to the SVD of G (or TSQR)
    bound: Optional[RankBound] = None

    def to_dict(self):
        d = {"singular_values": _nums(self.singular_values), "rank": int(self.rank),
             "tolerance": _num(self.tolerance), "gap": _num(self.gap),
             "level_set_dim": int(self.level_set_dim), "method": self.method}
        if self.refined_from:
            d["refined_from"] = self.refined_from
        return _bound_dict(d, self.bound)


@dataclass
class GgnSpectrum:
    eigenvalues: np.ndarray       # min(n·k, N) values, descending (cross-entropy's structural zeros last)
    rank: int
    tolerance: float
    gap: Optional[float] = None   # λ_rank / λ_rank+1
    method: str = ""              # the factor G̃'s method ("gram" | "normal" | "svd" | "tsqr" | "zero")
    refined_from: Optional[str] = None
    bound: Optional[RankBound] = None

    def to_dict(self):
        d = {"eigenvalues": _nums(self.eigenvalues), "rank": int(self.rank),
             "tolerance": _num(self.tolerance), "gap": _num(self.gap), "method": self.method}
        if self.refined_from:
            d["refined_from"] = self.refined_from
        return _bound_dict(d, self.bound)


@dataclass
class HessianSpectrum:
    eigenvalues: np.ndarray       # N values, descending
    rank: int
    tolerance: float
    residual_rel: Optional[float]  # ‖H − GGN‖_F / ‖H‖_F (None when H = 0)
    residual_eigenvalues: np.ndarray  # eig(H − GGN), descending
    gap: Optional[float] = None    # |λ|_rank / |λ|_rank+1
    method: str = "dense"          # eigen-solve of the assembled N × N matrix
    refined_from: Optional[str] = None
    bound: Optional[RankBound] = None

    def to_dict(self):
        d = {"eigenvalues": _nums(self.eigenvalues), "rank": int(self.rank),
             "tolerance": _num(self.tolerance), "residual_rel": _num(self.residual_rel),
             "residual_eigenvalues": _nums(self.residual_eigenvalues), "gap": _num(self.gap),
             "method": self.method}
        if self.refined_from:
            d["refined_from"] = self.refined_from
        return _bound_dict(d, self.bound)


@dataclass
class ParameterSpectrum:
    """One parameter tensor θ[offset : offset + count] (named as named_parameters() names it)
    and its column block G_t of the per-example Jacobian."""
    name: str
    shape: tuple
    offset: int
    count: int
    jacobian: JacobianSpectrum           # σ(G_t), rank; level_set_dim = count − rank
    gram_trace_fraction: Optional[float]  # ‖G_t‖²_F / ‖G‖²_F (None when G = 0)
    hessian_block: Optional[dict] = None  # {"eigenvalues": ndarray, "rank", "tolerance"} of H_tt

    @classmethod
    def from_proto(cls, p):
        j = p.jacobian
        jac = JacobianSpectrum(np.array(j.singular_values, dtype=np.float64), int(j.rank),
                               j.tolerance, j.gap if j.HasField("gap") else None,
                               int(j.level_set_dim), j.method, j.refined_from or None)
        hb = None
        if p.HasField("hessian_block"):
            hb = {"eigenvalues": np.array(p.hessian_block.eigenvalues, dtype=np.float64),
                  "rank": int(p.hessian_block.rank), "tolerance": p.hessian_block.tolerance}
        return cls(p.name, tuple(int(d) for d in p.shape), int(p.offset), int(p.count), jac,
                   _num(p.gram_trace_fraction), hb)

    def to_dict(self):
        d = {"name": self.name, "shape": [int(x) for x in self.shape], "offset": int(self.offset),
             "count": int(self.count), "jacobian": self.jacobian.to_dict(),
             "gram_trace_fraction": _num(self.gram_trace_fraction)}
        if self.hessian_block is not None:
            d["hessian_block"] = {"eigenvalues": _nums(self.hessian_block["eigenvalues"]),
                                  "rank": int(self.hessian_block["rank"]),
                                  "tolerance": _num(self.hessian_block["tolerance"])}
        return d


@dataclass
class Result:
    """One analysed point θ. Field names are the CLI JSON's keys: `loss_function` is the loss's
    name ("mse" | "cross_entropy" | "none") and `loss` its value."""
    num_params: int
    num_examples: int
    num_outputs: int
    backend: str
    device: str
    dtype: str
    loss_function: str
    reduction: str
    loss: Optional[float]
    grad_norm: Optional[float]
    jacobian: Optional[JacobianSpectrum] = None
    ggn: Optional[GgnSpectrum] = None
    hessian: Optional[HessianSpectrum] = None
    outputs: Optional[np.ndarray] = None          # [n, k] float64 (None when omitted)
    timings_ms: dict = field(default_factory=dict)  # forward, jacobian, solve, hessian
    jacobian_matrix: Optional[np.ndarray] = None  # [n·k, N] with return_jacobian=True (not in JSON)
    # What produced the result (docs/results.md, "provenance"): build, digests of the model and
    # data, the server's host and times. None from a server that predates it.
    provenance_fields: Optional[dict] = None
    queue_ms: Optional[float] = None   # from the server's response: waiting for a worker
    total_ms: Optional[float] = None   # the server's wall time for the request, queue included
    # vectors=[...]: name -> {"file", "shape", "dtype", "indices"}, the CLI JSON's "files"
    files: dict = field(default_factory=dict)
    _blob_ids: dict = field(default_factory=dict, repr=False)  # name -> server blob id
    _fetch: Optional[object] = field(default=None, repr=False)  # blob id -> bytes (DownloadBlob)
    _arrays: dict = field(default_factory=dict, repr=False)    # downloaded, by name

    def vectors(self, name):
        """The array `name` ("jacobian_row_basis", "jacobian_null_basis", "jacobian_left_basis",
        "ggn_eigenvectors", "hessian_eigenvectors"), downloaded from the server on first use
        (DownloadBlob) and cached; None when the request did not ask for it."""
        if name in self._arrays:
            return self._arrays[name]
        if name not in self._blob_ids:
            return None
        if self._fetch is None:
            raise RuntimeError(f"{name}: this Result has no connection to download it from")
        a = np.load(io.BytesIO(self._fetch(self._blob_ids[name])), allow_pickle=False)
        if list(a.shape) != list(self.files[name]["shape"]):
            raise ValueError(f"{name}: downloaded shape {a.shape}, expected {self.files[name]['shape']}")
        self._arrays[name] = a
        return a

    @property
    def jacobian_row_basis(self):
        """[rank, N]: rows = G's right singular vectors above the tolerance (the directions that
        change the outputs)."""
        return self.vectors("jacobian_row_basis")

    @property
    def jacobian_null_basis(self):
        """[N, N − rank]: columns = an orthonormal basis of G's null space (the tangent space of
        the behaviour manifold)."""
        return self.vectors("jacobian_null_basis")

    @property
    def jacobian_left_basis(self):
        """[n·k, rank]: columns = G's left singular vectors."""
        return self.vectors("jacobian_left_basis")

    @property
    def ggn_eigenvectors(self):
        """[N, c]: column j = the GGN eigenvector of ggn.eigenvalues[files[...]["indices"][j]]."""
        return self.vectors("ggn_eigenvectors")

    @property
    def hessian_eigenvectors(self):
        """[N, c]: column j = the Hessian eigenvector of hessian.eigenvalues[indices[j]]."""
        return self.vectors("hessian_eigenvectors")
    per_parameter: Optional[list] = None          # [ParameterSpectrum] with want per_parameter
    # Matrix-free spectra (want hessian_top … ggn_density): dicts with the CLI JSON's keys —
    # *_top / *_bottom {eigenvalues, residual_norms, converged, matvecs, method},
    # *_trace {estimate, std_error, probes, matvecs, method},
    # *_density {nodes [P][M], weights [P][M], probes, steps, matvecs, method, grid [G],
    # density [G] (the Gaussian-smoothed density on the grid, ∫ = 1), bandwidth (its σ)}.
    hessian_top: Optional[dict] = None
    hessian_bottom: Optional[dict] = None
    ggn_top: Optional[dict] = None
    ggn_bottom: Optional[dict] = None
    hessian_trace: Optional[dict] = None
    ggn_trace: Optional[dict] = None
    hessian_density: Optional[dict] = None
    ggn_density: Optional[dict] = None

    @classmethod
    def from_proto(cls, r):
        jac = ggn = hes = None
        if r.HasField("jacobian"):
            j = r.jacobian
            jac = JacobianSpectrum(np.array(j.singular_values, dtype=np.float64), int(j.rank),
                                   j.tolerance, j.gap if j.HasField("gap") else None,
                                   int(j.level_set_dim), j.method, j.refined_from or None,
                                   _bound_from(j))
        if r.HasField("ggn"):
            g = r.ggn
            ggn = GgnSpectrum(np.array(g.eigenvalues, dtype=np.float64), int(g.rank), g.tolerance,
                              g.gap if g.HasField("gap") else None, g.method,
                              g.refined_from or None, _bound_from(g))
        if r.HasField("hessian"):
            h = r.hessian
            rel = h.residual_rel
            hes = HessianSpectrum(np.array(h.eigenvalues, dtype=np.float64), int(h.rank),
                                  h.tolerance, rel if math.isfinite(rel) else None,
                                  np.array(h.residual_eigenvalues, dtype=np.float64),
                                  h.gap if h.HasField("gap") else None, h.method or "dense",
                                  h.refined_from or None, _bound_from(h))
        outputs = _tensor_to_numpy(r.outputs) if r.HasField("outputs") else None
        if outputs is not None and outputs.size == 0:
            outputs = None
        if outputs is not None:
            outputs = outputs.reshape(int(r.num_examples), int(r.num_outputs))
        jm = _tensor_to_numpy(r.jacobian_matrix) if r.HasField("jacobian_matrix") else None
        files = {v.name: {"file": v.name + ".npy", "shape": [int(s) for s in v.shape],
                          "dtype": v.dtype or "float64", "indices": [int(i) for i in v.indices]}
                 for v in r.vectors}
        t = r.timings
        extra = {}
        for name in ("hessian_top", "hessian_bottom", "ggn_top", "ggn_bottom"):
            if r.HasField(name):
                e = getattr(r, name)
                extra[name] = {"eigenvalues": np.array(e.eigenvalues, dtype=np.float64),
                               "residual_norms": np.array(e.residual_norms, dtype=np.float64),
                               "converged": bool(e.converged), "matvecs": int(e.matvecs),
                               "method": e.method}
        for name in ("hessian_trace", "ggn_trace"):
            if r.HasField(name):
                e = getattr(r, name)
                extra[name] = {"estimate": e.estimate, "std_error": e.std_error,
                               "probes": int(e.probes), "matvecs": int(e.matvecs), "method": e.method}
        for name in ("hessian_density", "ggn_density"):
            if r.HasField(name):
                e = getattr(r, name)
                extra[name] = {"nodes": [np.array(q.nodes, dtype=np.float64) for q in e.probes_quadrature],
                               "weights": [np.array(q.weights, dtype=np.float64) for q in e.probes_quadrature],
                               "probes": int(e.probes), "steps": int(e.steps),
                               "matvecs": int(e.matvecs), "method": e.method,
                               "grid": np.array(e.grid, dtype=np.float64),
                               "density": np.array(e.density, dtype=np.float64),
                               "bandwidth": float(e.bandwidth)}
        return cls(**extra,
            num_params=int(r.num_params), num_examples=int(r.num_examples),
            num_outputs=int(r.num_outputs), backend=r.backend, device=r.device, dtype=r.dtype,
            loss_function=r.loss, reduction=r.reduction,
            loss=r.loss_value if r.HasField("loss_value") else None,
            grad_norm=r.grad_norm if r.HasField("grad_norm") else None,
            jacobian=jac, ggn=ggn, hessian=hes, outputs=outputs,
            timings_ms={"forward": t.forward_ms, "jacobian": t.jacobian_ms,
                        "solve": t.solve_ms, "hessian": t.hessian_ms},
            jacobian_matrix=jm, files=files, _blob_ids={v.name: v.blob_id for v in r.vectors},
            per_parameter=[ParameterSpectrum.from_proto(p) for p in r.per_parameter] or None,
            provenance_fields=_provenance_from_proto(r.provenance) if r.HasField("provenance") else None)

    @property
    def provenance(self):
        """The "provenance" object of the CLI's JSON (None when the server sent none)."""
        if self.provenance_fields is None:
            return None
        f = dict(self.provenance_fields)
        tolerance = {"rule": f.pop("tolerance_rule"), "rtol": _num(f.pop("rtol")), "atol": _num(f.pop("atol"))}
        for name in ("jacobian", "ggn", "hessian"):
            spectrum = getattr(self, name)
            if spectrum is not None:
                tolerance[name] = _num(spectrum.tolerance)
        f.update(dtype=self.dtype, backend=self.backend, device=self.device, tolerance=tolerance)
        if self.queue_ms is not None:
            f["queue_ms"] = float(self.queue_ms)
        if self.total_ms is not None:
            f["total_ms"] = float(self.total_ms)
        return f

    def to_dict(self):
        """The CLI's JSON object as Python values (same keys, same order)."""
        d = {"num_params": int(self.num_params), "num_examples": int(self.num_examples),
             "num_outputs": int(self.num_outputs), "backend": self.backend,
             "device": self.device, "dtype": self.dtype, "loss_function": self.loss_function,
             "reduction": self.reduction, "loss": _num(self.loss),
             "grad_norm": _num(self.grad_norm)}
        if self.jacobian is not None:
            d["jacobian"] = self.jacobian.to_dict()
        if self.ggn is not None:
            d["ggn"] = self.ggn.to_dict()
        if self.hessian is not None:
            d["hessian"] = self.hessian.to_dict()
        if self.per_parameter:
            d["per_parameter"] = [p.to_dict() for p in self.per_parameter]
        if self.outputs is not None and self.outputs.size:
            d["outputs"] = [_nums(row) for row in np.asarray(self.outputs).reshape(
                int(self.num_examples), int(self.num_outputs))]
        if self.files:
            d["files"] = {name: dict(f) for name, f in self.files.items()}
        d["timings_ms"] = {k: float(self.timings_ms.get(k, 0.0))
                           for k in ("forward", "jacobian", "solve", "hessian")}
        if self.provenance_fields is not None:
            d["provenance"] = self.provenance
        return d

    def to_json(self, indent=None):
        """The CLI's JSON object (`basin analyze --json`: one line, keys sorted as
        nlohmann::json writes them; indent=2 for `--json --pretty`). The parsed values are
        equal (timings_ms aside); the text can differ in a last digit where nlohmann prints a
        17-digit form of the same double that Python prints shortest."""
        if indent is None:
            return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False,
                              sort_keys=True)
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False,
                          sort_keys=True)

    def summary(self):
        """A few lines like the CLI's human-readable report."""
        lines = [f"N = {self.num_params}, n = {self.num_examples}, k = {self.num_outputs}, "
                 f"{self.backend} ({self.device}), {self.dtype}"]
        if self.loss is not None:
            lines.append(f"loss      {self.loss_function} ({self.reduction}) = {self.loss:.4g}, "
                         f"|grad| = {self.grad_norm:.4g}")
        if self.jacobian is not None:
            j = self.jacobian
            lines.append(f"jacobian  rank {j.rank} of {len(j.singular_values)} (tolerance "
                         f"{j.tolerance:.4g}, method {j.method}), level set dim {j.level_set_dim}")
            lines += _bound_line(j.bound)
        if self.ggn is not None:
            lines.append(f"ggn       rank {self.ggn.rank} (method {self.ggn.method}), top "
                         f"{_fmt(self.ggn.eigenvalues[:4])}")
            lines += _bound_line(self.ggn.bound)
        if self.hessian is not None:
            h = self.hessian
            rel = "n/a" if h.residual_rel is None else f"{h.residual_rel:.4g}"
            lines.append(f"hessian   rank {h.rank}, |H - GGN|/|H| = {rel}, top "
                         f"{_fmt(h.eigenvalues[:4])}")
            lines += _bound_line(h.bound)
        for p in self.per_parameter or []:
            share = "n/a" if p.gram_trace_fraction is None else f"{p.gram_trace_fraction:.4g}"
            lines.append(f"  {p.name:<16} {'x'.join(map(str, p.shape)):<10} rank "
                         f"{p.jacobian.rank}/{p.count}  share {share}")
        return "\n".join(lines)

    def __repr__(self):
        rank = self.jacobian.rank if self.jacobian is not None else None
        return (f"Result(N={self.num_params}, n={self.num_examples}, k={self.num_outputs}, "
                f"loss={self.loss!r}, rank(G)={rank})")


def _bound_from(spectrum_proto):
    """The spectrum message's RankBound (None from a server that predates it)."""
    return RankBound.from_proto(spectrum_proto.bound) if spectrum_proto.HasField("bound") else None


def _bound_line(bound):
    return [] if bound is None else [f"          bound: rank <= {bound.rank_at_most} ({bound.why})"
                                     + (" [exact]" if bound.exact else "")]


def _fmt(values):
    return " ".join(f"{v:.4g}" for v in values)
