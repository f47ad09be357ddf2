"""basin.Client: a thin wrapper over the basin.v1 gRPC contract."""
import hashlib
import io
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

import grpc
import numpy as np

from . import errors
from .models import _varint as _read_varint
from .models import Sequential, to_model
from .result import Result
from .torch_export import TorchModel
from .v1 import basin_pb2 as pb2
from .v1 import basin_pb2_grpc as pb2_grpc

_LOSS = {"none": pb2.LOSS_NONE, "mse": pb2.LOSS_MSE, "cross_entropy": pb2.LOSS_CROSS_ENTROPY}
_REDUCTION = {"mean": pb2.REDUCTION_MEAN, "sum": pb2.REDUCTION_SUM}
_METHOD = {"auto": pb2.METHOD_AUTO, "gram": pb2.METHOD_GRAM, "normal": pb2.METHOD_NORMAL,
           "svd": pb2.METHOD_SVD}
_DTYPE = {"float64": pb2.COMPUTE_DTYPE_FLOAT64, "float32": pb2.COMPUTE_DTYPE_FLOAT32}
_DEVICE = {None: pb2.DEVICE_UNSPECIFIED, "auto": pb2.DEVICE_AUTO, "cpu": pb2.DEVICE_CPU,
           "cuda": pb2.DEVICE_CUDA}
_WANTS = ("jacobian", "ggn", "hessian", "per_parameter", "hessian_top", "ggn_top", "hessian_trace",
          "ggn_trace", "hessian_density", "ggn_density")
# spectra={...}: the matrix-free options (AnalyzeRequest.spectra; the CLI's --top-k ... flags).
_SPECTRA = ("top_k", "bottom_k", "lanczos_steps", "lanczos_block", "probes", "seed", "tol",
            "eigenvectors", "method")
_VECTORS = ("jacobian_row", "jacobian_null", "jacobian_left", "ggn", "hessian")
_TENSOR_DTYPES = {np.dtype("<f4"): pb2.DTYPE_FLOAT32, np.dtype("<f8"): pb2.DTYPE_FLOAT64,
                  np.dtype("<i4"): pb2.DTYPE_INT32, np.dtype("<i8"): pb2.DTYPE_INT64}
_FINAL = ("succeeded", "failed", "cancelled")
DEFAULT_HESSIAN_LIMIT = 4096  # the CLI's --hessian-limit default


def _choice(table, value, what):
    key = value.lower() if isinstance(value, str) else value
    if key not in table:
        raise ValueError(f"{what}: {value!r}; expected one of "
                         f"{', '.join(str(k) for k in table if k is not None)}")
    return table[key]


def _as_wire_array(a, what):
    """numpy array in one of the wire dtypes (little-endian f4/f8/i4/i8), C order."""
    if hasattr(a, "detach") and hasattr(a, "numpy"):  # torch.Tensor, without importing torch
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind == "f":
        if a.dtype.itemsize not in (4, 8):
            a = a.astype(np.float64)
    elif a.dtype.kind in "iub":
        if a.dtype.kind != "i" or a.dtype.itemsize not in (4, 8):
            a = a.astype(np.int64)
    else:
        raise ValueError(f"{what}: unsupported dtype {a.dtype}; expected float or integer values")
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(a)


def _npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


@dataclass
class TLS:
    """TLS settings: PEM file paths. `root_certificates` verifies the server (None: system
    roots); `certificate_chain` + `private_key` authenticate the client (mutual TLS);
    `server_name` overrides the name checked against the server certificate."""
    root_certificates: Optional[str] = None
    certificate_chain: Optional[str] = None
    private_key: Optional[str] = None
    server_name: Optional[str] = None

    @classmethod
    def coerce(cls, tls):
        if tls is None or tls is False:
            return None
        if tls is True:
            return cls()
        if isinstance(tls, cls):
            return tls
        if isinstance(tls, dict):
            aliases = {"root_certificates": ("root_certificates", "root_cert", "root", "ca",
                                             "ca_cert"),
                       "certificate_chain": ("certificate_chain", "cert", "client_cert"),
                       "private_key": ("private_key", "key", "client_key"),
                       "server_name": ("server_name", "ssl_target_name_override")}
            kw, known = {}, set()
            for name, keys in aliases.items():
                for k in keys:
                    if k in tls:
                        kw[name] = tls[k]
                        known.add(k)
            unknown = set(tls) - known
            if unknown:
                raise ValueError(f"tls: unknown keys {sorted(unknown)}")
            return cls(**kw)
        # any object with the attribute names
        return cls(**{k: getattr(tls, k, None) for k in
                      ("root_certificates", "certificate_chain", "private_key", "server_name")})

    def credentials(self):
        def read(path):
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("tls: give both certificate_chain and private_key, or neither")
        return grpc.ssl_channel_credentials(read(self.root_certificates), read(self.private_key),
                                            read(self.certificate_chain))


def _msg_to_dict(msg):
    """A protobuf message as plain Python values (enums by name, every field present)."""
    out = {}
    for f in msg.DESCRIPTOR.fields:
        v = getattr(msg, f.name)
        repeated = f.label == f.LABEL_REPEATED
        if f.message_type is not None:
            if repeated:
                out[f.name] = [_msg_to_dict(x) for x in v]
            elif msg.HasField(f.name):
                out[f.name] = _msg_to_dict(v)
            else:
                out[f.name] = None
        elif f.enum_type is not None:
            name = f.enum_type.values_by_number
            out[f.name] = ([name[x].name if x in name else x for x in v] if repeated
                           else (name[v].name if v in name else v))
        else:
            out[f.name] = list(v) if repeated else v
    return out


def _state_name(state):
    return pb2.JobState.Name(state).replace("JOB_STATE_", "").lower()


class Job:
    """A submitted analysis. `status` refreshes and returns the state ("queued", "running",
    "succeeded", "failed", "cancelled"); `wait()` blocks (with a progress bar on a terminal)
    and returns the result; `cancel()` asks the server to stop it."""

    def __init__(self, client, job_id, batch=None, snapshot=None):
        self._client = client
        self.id = job_id
        self._batch = batch
        self._results = None
        self._snapshot = None
        if snapshot is not None:
            self._update(snapshot)

    def _update(self, job):
        self._snapshot = job
        if job.HasField("result") and job.result.results:
            self._results = job.result

    # -- status ------------------------------------------------------------------------------
    def refresh(self):
        self._update(self._client._call("GetJob", pb2.GetJobRequest(job_id=self.id)))
        return self

    @property
    def status(self):
        """The job's state now, fetched from the server."""
        return self.refresh().state

    @property
    def state(self):
        """The state at the last refresh (no RPC)."""
        return _state_name(self._snapshot.state) if self._snapshot is not None else "unknown"

    @property
    def stage(self):
        return self._snapshot.stage if self._snapshot is not None else ""

    @property
    def stage_detail(self):
        """The step within the stage while running, e.g. "lanczos 37/1201 (12/20 converged)",
        "hutch++ 8/30", "slq probes 1-4/8 step 37/80" (the matrix-free spectra); "" otherwise."""
        return self._snapshot.stage_detail if self._snapshot is not None else ""

    @property
    def fraction(self):
        return self._snapshot.fraction if self._snapshot is not None else 0.0

    @property
    def queue_position(self):
        return self._snapshot.queue_position if self._snapshot is not None else -1

    @property
    def done(self):
        return self.state in _FINAL

    def info(self):
        """The last job snapshot as a dict (the basin.v1.Job message, result left out)."""
        if self._snapshot is None:
            self.refresh()
        d = _msg_to_dict(self._snapshot)
        d.pop("result", None)
        d["state"] = self.state
        return d

    def __repr__(self):
        detail = f", stage_detail={self.stage_detail!r}" if self.stage_detail else ""
        return f"Job({self.id!r}, state={self.state!r}, stage={self.stage!r}{detail}, " \
               f"fraction={self.fraction:.2f})"

    # -- control -----------------------------------------------------------------------------
    def cancel(self):
        self._update(self._client._call("CancelJob", pb2.CancelJobRequest(job_id=self.id)))
        return self

    def wait(self, progress=True, timeout=None, poll_interval=0.5):
        """Blocks until the job ends. Returns its Result (a list for a batch of checkpoints);
        raises the matching BasinError if it failed or was cancelled. `progress`: a text
        progress bar on stderr, redrawn in place on a terminal; elsewhere (a log, a notebook's
        captured stderr, CI) one plain line per change of state or stage and per tenth of
        progress. `timeout` in seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        if progress:
            bar = _ProgressBar(sys.stderr) if _isatty(sys.stderr) else _ProgressLines(sys.stderr)
        try:
            if not self.done:
                self._watch(bar, deadline, poll_interval)
            if bar is not None:
                bar.draw(self)  # the final state, also for a job that had ended already
        finally:
            if bar is not None:
                bar.close()
        return self.result()

    def _watch(self, bar, deadline, poll_interval):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            stream = self._client._stub.WatchJob(pb2.WatchJobRequest(job_id=self.id),
                                                 timeout=left, metadata=self._client._metadata)
            for job in stream:
                self._update(job)
                if bar is not None:
                    bar.draw(self)
                if self.done:
                    return
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None
        # The stream ended without a final state (e.g. the server restarted): poll.
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                raise errors.DeadlineExceeded(f"job {self.id} still {self.state}",
                                              job_id=self.id)
            time.sleep(poll_interval)
            self.refresh()
            if bar is not None:
                bar.draw(self)

    def result(self, timeout=None):
        """The job's Result(s); waits (without a progress bar) if it has not finished."""
        if not self.done:
            self.refresh()
        if not self.done:
            return self.wait(progress=False, timeout=timeout)
        state = self.state
        if state == "succeeded":
            if self._results is None:
                self._update(self._client._call(
                    "GetJob", pb2.GetJobRequest(job_id=self.id, include_result=True)))
            if self._results is None:
                raise errors.DataLoss(f"job {self.id} succeeded but returned no result",
                                      job_id=self.id)
            return self._client._results(self._results, self._batch)
        err = self._snapshot.error
        if state == "cancelled":
            raise errors.Cancelled(err.message or "the job was cancelled", job_id=self.id)
        raise errors.error_for(err.code or "UNKNOWN", err.message or "the job failed",
                               job_id=self.id)


def _isatty(stream):
    try:
        return stream.isatty()
    except Exception:
        return False


class _ProgressBar:
    def __init__(self, stream, width=30):
        self.stream, self.width, self.drawn = stream, width, False

    def draw(self, job):
        frac = min(max(job.fraction, 0.0), 1.0)
        filled = int(round(frac * self.width))
        where = f"queued #{job.queue_position + 1}" if job.state == "queued" else job.stage
        if job.state == "running" and job.stage_detail:
            where = f"{where}: {job.stage_detail}"
        self.stream.write(f"\r[{'#' * filled}{'-' * (self.width - filled)}] {frac * 100:5.1f}% "
                          f"{job.state:<9} {where:<12}\033[K")
        self.stream.flush()
        self.drawn = True

    def close(self):
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


class _ProgressLines:
    """Progress for a stream that is not a terminal: a line such as
    "basin: job j-12 running solve 40%" whenever the state or stage changes or the fraction
    passes another tenth, never repeating the line before."""

    def __init__(self, stream):
        self.stream, self.last = stream, None

    def draw(self, job):
        frac = min(max(job.fraction, 0.0), 1.0)
        where = f"queued (position {job.queue_position + 1})" if job.state == "queued" else \
            f"{job.state} {job.stage}".strip()
        key = (where, int(frac * 10))
        if key == self.last:
            return
        self.last = key
        self.stream.write(f"basin: job {job.id} {where} {frac * 100:.0f}%\n")
        self.stream.flush()

    def close(self):
        pass


class Client:
    """Connection to a Basin server.

    address: "host:port" (default: $BASIN_SERVER or localhost:50051).
    token:   bearer token for servers started with --tokens (default: $BASIN_TOKEN).
    tls:     None (plaintext), True (system roots), a basin.TLS, or a dict with
             root_certificates / certificate_chain / private_key / server_name (PEM paths;
             aliases ca, cert, key).
    inline_limit: arrays larger than this many bytes (default 1 MiB) are uploaded once with
             UploadBlob (≤ 4 MiB chunks, sha256 computed here) and referenced by id; an array
             already uploaded through this Client is not sent again.
    """

    def __init__(self, address=None, token=None, tls=None, *, inline_limit=1 << 20,
                 chunk_bytes=4 << 20, max_message_bytes=512 << 20, options=()):
        self.address = address or os.environ.get("BASIN_SERVER") or "localhost:50051"
        token = token if token is not None else os.environ.get("BASIN_TOKEN")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        opts = [("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes)] + list(options)
        self._tls = TLS.coerce(tls)
        if self._tls is not None:
            if self._tls.server_name:
                opts.append(("grpc.ssl_target_name_override", self._tls.server_name))
            self._channel = grpc.secure_channel(self.address, self._tls.credentials(), opts)
        else:
            self._channel = grpc.insecure_channel(self.address, opts)
        self._stub = pb2_grpc.BasinStub(self._channel)
        self.inline_limit = int(inline_limit)
        self.chunk_bytes = min(int(chunk_bytes), 4 << 20)
        self._blobs = {}           # "sha256:<hex>" of uploaded content -> blob id
        self.upload_count = 0      # UploadBlob calls made (tests check deduplication with it)
        self.uploaded_bytes = 0
        self._server_info = None

    # -- plumbing ----------------------------------------------------------------------------
    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Client({self.address!r})"

    def _call(self, method, request, timeout=None):
        try:
            return getattr(self._stub, method)(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None

    # -- blobs -------------------------------------------------------------------------------
    def upload(self, data, timeout=None):
        """Uploads bytes (content-addressed) and returns the blob id "sha256:<hex>". Content
        already uploaded through this Client is not sent again."""
        data = bytes(data)
        blob_id = "sha256:" + hashlib.sha256(data).hexdigest()
        if blob_id in self._blobs:
            return self._blobs[blob_id]
        chunk = self.chunk_bytes

        def requests():
            yield pb2.UploadBlobRequest(expected_id=blob_id, chunk=data[:chunk])
            for off in range(chunk, len(data), chunk):
                yield pb2.UploadBlobRequest(chunk=data[off:off + chunk])

        try:
            resp = self._stub.UploadBlob(requests(), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None
        self.upload_count += 1
        self.uploaded_bytes += len(data)
        self._blobs[blob_id] = resp.blob_id
        return resp.blob_id

    def download(self, blob_id, timeout=None):
        """The bytes of a blob you own (an upload, or a result's vectors), over DownloadBlob."""
        try:
            stream = self._stub.DownloadBlob(pb2.DownloadBlobRequest(blob_id=blob_id),
                                             timeout=timeout, metadata=self._metadata)
            return b"".join(msg.chunk for msg in stream)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None

    def upload_array(self, array, timeout=None):
        """Uploads an array as a .npy blob; returns its id."""
        return self.upload(_npy_bytes(_as_wire_array(array, "array")), timeout=timeout)

    def _tensor_source(self, array, what, timeout, used_blobs):
        a = _as_wire_array(array, what)
        if a.nbytes > self.inline_limit:
            blob_id = self.upload(_npy_bytes(a), timeout=timeout)
            used_blobs.append(blob_id)
            return pb2.TensorSource(blob_id=blob_id)
        t = pb2.Tensor(dtype=_TENSOR_DTYPES[a.dtype], shape=list(a.shape), data=a.tobytes())
        return pb2.TensorSource(tensor=t)

    # -- server ------------------------------------------------------------------------------
    def info(self, timeout=None):
        """GetServerInfo as a dict: version, backend, device_name, limits, queue_length, ..."""
        resp = self._call("GetServerInfo", pb2.GetServerInfoRequest(), timeout)
        self._server_info = resp
        return _msg_to_dict(resp)

    def health(self, service="", timeout=5.0):
        """The standard grpc.health.v1 Check: "SERVING", "NOT_SERVING", ... (the request and
        response are encoded here by hand: one string field, one enum field)."""
        svc = service.encode()
        req = (b"\x0a" + _varint(len(svc)) + svc) if svc else b""
        check = self._channel.unary_unary("/grpc.health.v1.Health/Check",
                                          request_serializer=lambda b: b,
                                          response_deserializer=lambda b: b)
        try:
            resp = check(req, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None
        status = _decode_health(resp)
        return {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}.get(
            status, str(status))

    def _hessian_limit(self):
        if self._server_info is None:
            try:
                self.info()
            except errors.BasinError:
                return DEFAULT_HESSIAN_LIMIT
        limit = self._server_info.limits.max_hessian_params
        return limit if limit > 0 else DEFAULT_HESSIAN_LIMIT

    # -- analysis ----------------------------------------------------------------------------
    def _build_request(self, model, inputs, targets, loss, reduction, want, method, dtype,
                       device, rtol, atol, return_jacobian, outputs, timeout, used_blobs,
                       vectors=None, vectors_k=0, spectra=None):
        model = to_model(model, inputs)
        req = pb2.AnalyzeRequest()
        loss = "none" if loss is None else loss
        req.loss = _choice(_LOSS, loss, "loss")
        req.reduction = _choice(_REDUCTION, reduction, "reduction")
        req.method = _choice(_METHOD, method, "method")
        req.dtype = _choice(_DTYPE, dtype, "dtype")
        req.device = _choice(_DEVICE, device, "device")
        if rtol is not None:
            req.rtol = float(rtol)
        if atol is not None:
            req.atol = float(atol)
        req.return_jacobian = bool(return_jacobian)
        req.omit_outputs = not outputs
        if isinstance(vectors, str):
            vectors = [w.strip() for w in vectors.split(",") if w.strip()]
        for w in vectors or ():
            if w not in _VECTORS:
                raise ValueError(f"vectors: unknown {w!r}; expected some of {', '.join(_VECTORS)}")
            req.vectors.append(w)
        if vectors_k and not vectors:
            raise ValueError("vectors_k: only with vectors=[...]")
        req.vectors_k = int(vectors_k or 0)
        for key, value in (spectra or {}).items():
            if key not in _SPECTRA:
                raise ValueError(f"spectra: unknown {key!r}; expected some of {', '.join(_SPECTRA)}")
            setattr(req.spectra, key, value)

        params = model.params
        if isinstance(model, Sequential):
            req.model.CopyFrom(model._proto(pb2))
            if model.param_names:  # named_parameters() of a torch module
                req.param_names.extend(model.param_names)
            if params is None:
                raise ValueError("model: a basin.Sequential needs params (a vector [N], or "
                                 "checkpoints [B, N])")
        else:  # OnnxModel, or TorchModel (a torch module exported on this client)
            req.onnx_blob_id = self.upload(model.read(), timeout=timeout)
            used_blobs.append(req.onnx_blob_id)
            if isinstance(model, TorchModel):
                # θ is exactly these initialisers, in model.parameters() order; the rest are
                # constants (buffers); param_names are the torch names for per_parameter
                req.parameter_names.extend(model.parameter_names)
                req.constant_names.extend(model.constant_names)
                req.param_names.extend(model.param_names)
        batch = False
        if params is not None:
            if isinstance(params, (list, tuple)):
                params = np.stack([_as_wire_array(p, "params").ravel() for p in params])
            params = _as_wire_array(params, "params")
            batch = params.ndim == 2
            req.params.CopyFrom(self._tensor_source(params, "params", timeout, used_blobs))

        x = inputs
        if hasattr(x, "detach") and hasattr(x, "numpy"):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if getattr(model, "flatten_inputs", False) and x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        req.inputs.CopyFrom(self._tensor_source(x, "inputs", timeout, used_blobs))
        if targets is not None:
            req.targets.CopyFrom(self._tensor_source(targets, "targets", timeout, used_blobs))

        if want is None:  # the CLI's default
            if req.loss == pb2.LOSS_NONE:
                want = ("jacobian",)
            else:
                want = ["jacobian", "ggn"]
                n_params = (model.num_params if isinstance(model, (Sequential, TorchModel))
                            else model.num_initializer_values())
                if n_params is not None and n_params <= self._hessian_limit():
                    want.append("hessian")
        if isinstance(want, str):
            want = [w.strip() for w in want.split(",") if w.strip()]
        for w in want:
            if w not in _WANTS:
                raise ValueError(f"want: unknown {w!r}; expected some of {', '.join(_WANTS)}")
        req.want.CopyFrom(pb2.Want(**{w: True for w in want}))
        return req, batch

    def _with_blob_retry(self, build, send):
        """Builds and sends a request; if the server no longer has a blob this Client cached
        (e.g. it restarted with a temporary data dir), uploads again once."""
        used = []
        req, batch = build(used)
        try:
            return send(req), batch
        except (errors.NotFound, errors.InvalidArgument) as e:
            # basind answers NOT_FOUND "<field>: unknown blob ..."; older builds answered
            # INVALID_ARGUMENT, so both are recognised (by the message naming the blob)
            if not used or "blob" not in e.message or not any(b in e.message for b in used):
                raise
            for b in used:
                self._blobs.pop(b, None)
            used = []
            req, batch = build(used)
            return send(req), batch

    def _results(self, response, batch):
        results = [Result.from_proto(r) for r in response.results]
        for r in results:
            r.queue_ms, r.total_ms = response.queue_ms, response.total_ms
            r._fetch = self.download
        if batch is None:
            batch = len(results) != 1
        return results if batch else results[0]

    def analyze(self, model, inputs, targets=None, loss="mse", want=None, method="auto",
                dtype="float64", rtol=None, atol=None, timeout=None, device=None,
                reduction="mean", return_jacobian=False, outputs=True, vectors=None,
                vectors_k=0, spectra=None):
        """Analyses `model` at its parameters on `inputs` (and `targets`): returns a Result, or
        a list of Results when the model carries several checkpoints.

        model:   basin.Sequential, any torch.nn.Module (a chain of Linear layers and
                 activations goes as the chain shorthand; anything else is exported to ONNX
                 here, in eval mode, with θ = parameters_to_vector(model.parameters())),
                 a basin.TorchModel (basin.from_torch), or a path to an .onnx file
        inputs:  [n, ...] (the model's per-example input shape; [n, input_dim] for a chain),
                 floats or integer token ids [n, T] (a module embedding its input);
                 targets: [n, k] floats (mse) or [n] integer labels (cross_entropy; [n, T]
                 one per position for a sequence output [n, T, C]); None with loss="none"
        loss:    "mse" | "cross_entropy" | "none";  reduction: "mean" | "sum"
        want:    any of ("jacobian", "ggn", "hessian", "per_parameter") (per_parameter fills
                 Result.per_parameter); None = the CLI's default: jacobian
                 with loss "none", else jacobian + ggn, + hessian when N <= the server's
                 max_hessian_params (4096 unless the server says otherwise)
        method:  "auto" | "gram" | "normal" | "svd";  dtype: "float64" | "float32"
        rtol/atol: rank tolerance max(atol, rtol·σ_max) instead of the matrix_rank default
        device:  None (the server's default) | "auto" | "cpu" | "cuda"
        return_jacobian: also return G itself as Result.jacobian_matrix [n·k, N]
        outputs: return f(x_i) as Result.outputs
        vectors: any of ("jacobian_row", "jacobian_null", "jacobian_left", "ggn", "hessian"),
                 each needing its spectrum in `want`: the Result then has NumPy arrays
                 jacobian_row_basis [rank, N], jacobian_null_basis [N, N − rank],
                 jacobian_left_basis [n·k, rank], ggn_eigenvectors / hessian_eigenvectors [N, c],
                 downloaded from the server when first read (Result.files names them)
        vectors_k: 0 = all; K keeps the K largest (hessian: the K largest and K smallest)
        spectra: options of the matrix-free wants (hessian_top, ggn_top, *_trace, *_density):
                 {"top_k": 20, "bottom_k": 0, "lanczos_steps", "lanczos_block", "probes",
                 "seed", "tol": 1e-8, "eigenvectors": bool, "method": "auto"|"dense"|"matrix_free"};
                 the Result then has hessian_top / hessian_bottom / hessian_trace /
                 hessian_density (and ggn_*) as dicts with the CLI JSON's keys
        """
        def build(used):
            return self._build_request(model, inputs, targets, loss, reduction, want, method,
                                       dtype, device, rtol, atol, return_jacobian, outputs,
                                       timeout, used, vectors, vectors_k, spectra)
        resp, batch = self._with_blob_retry(build, lambda r: self._call("Analyze", r, timeout))
        return self._results(resp, batch)

    def submit(self, model, inputs, targets=None, loss="mse", want=None, method="auto",
               dtype="float64", rtol=None, atol=None, timeout=None, device=None,
               reduction="mean", return_jacobian=False, outputs=True, priority=0, vectors=None,
               vectors_k=0, spectra=None):
        """Like analyze(), but queues a job and returns a Job at once."""
        def build(used):
            return self._build_request(model, inputs, targets, loss, reduction, want, method,
                                       dtype, device, rtol, atol, return_jacobian, outputs,
                                       timeout, used, vectors, vectors_k, spectra)

        def send(req):
            return self._call("SubmitJob", pb2.SubmitJobRequest(request=req,
                                                                priority=int(priority)), timeout)
        resp, batch = self._with_blob_retry(build, send)
        return Job(self, resp.job_id, batch, resp.job if resp.HasField("job") else None)

    def job(self, job_id):
        """A Job handle for an existing id (raises NotFound if the caller cannot see it)."""
        return Job(self, job_id).refresh()

    def jobs(self, states=None, limit=0, timeout=None):
        """The caller's jobs, newest first; `states`: e.g. ("queued", "running")."""
        req = pb2.ListJobsRequest(limit=int(limit))
        for s in states or ():
            req.states.append(pb2.JobState.Value("JOB_STATE_" + s.upper()))
        resp = self._call("ListJobs", req, timeout)
        return [Job(self, j.id, None, j) for j in resp.jobs]


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _decode_health(data):
    """Field 1 (varint) of grpc.health.v1.HealthCheckResponse; 0 when absent."""
    i = 0
    while i < len(data):
        key = data[i]
        i += 1
        if key == 0x08:
            return _read_varint(data, i)[0]
        break
    return 0
