"""Analysis results: dataclasses mirroring the CLI's JSON (`basin analyze --json`) field for
field, with numpy arrays for spectra. `Result.to_json()` prints the same JSON object."""
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
        t = r.timings
        return cls(
            num_params=int(r.num_params), num_examples=int(r.num_examples),
            num_outputs=int(r.num_outputs), backend=r.backend, device=r.device, dtype=r.dtype,
            loss_function=r.loss, reduction=r.reduction,
            loss=r.loss_value if r.HasField("loss_value") else None,
            grad_norm=r.grad_norm if r.HasField("grad_norm") else None,
            jacobian=jac, ggn=ggn, hessian=hes, outputs=outputs,
            timings_ms={"forward": t.forward_ms, "jacobian": t.jacobian_ms,
                        "solve": t.solve_ms, "hessian": t.hessian_ms},
            jacobian_matrix=jm)

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
        if self.outputs is not None and self.outputs.size:
            d["outputs"] = [_nums(row) for row in np.asarray(self.outputs).reshape(
                int(self.num_examples), int(self.num_outputs))]
        d["timings_ms"] = {k: float(self.timings_ms.get(k, 0.0))
                           for k in ("forward", "jacobian", "solve", "hessian")}
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
