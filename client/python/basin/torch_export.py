"""Any torch.nn.Module as an ONNX graph whose parameters are exactly model.parameters().

The module is exported on the client with torch.onnx.export (the TorchScript exporter of
torch 1.13+) in eval mode, with the settings that keep every parameter its own initialiser:

  * training=TrainingMode.PRESERVE on a module in eval mode: inference semantics (BatchNorm
    uses its running statistics, Dropout is gone) WITHOUT the EVAL-mode peephole that folds
    BatchNormalization into the preceding Conv (which would replace conv.weight, conv.bias,
    bn.weight and bn.bias by two new, fused initialisers);
  * do_constant_folding=False: no parameter is folded into a new constant (w.t(), w * 2, ...);
  * the exporter's initialiser de-duplication compares data pointers only: by value (its
    eval-mode default) it would merge BatchNorm's fresh running_var (ones) into bn.weight
    (ones) and write `running_var = Identity(bn.weight)`, differentiating a statistic;
  * a symbolic batch axis (dynamic_axes), opset 17 (LayerNormalization is one node).

The initialisers are then mapped back to model.parameters() order: by name
(named_parameters()), else by identical data among the parameters not matched yet; a
parameter found nowhere, found twice, or matched ambiguously is a ValueError naming it. Every
other initialiser (buffers such as BatchNorm's running statistics, exporter constants) is a
constant. The request then names both lists (AnalyzeRequest.parameter_names, constant_names),
so the server takes exactly these initialisers as θ = parameters_to_vector(model.parameters()).
torch is imported here only.
"""
import contextlib
import io
import warnings

import numpy as np

OPSET = 17

# TensorProto.DataType -> numpy dtype (the float and integer types an exporter writes)
_ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
                9: np.bool_, 10: np.float16, 11: np.float64}
_FLOAT_TYPES = (1, 10, 11)


class TorchModel:
    """A torch.nn.Module exported to ONNX on the client (see the module docstring).

    onnx_bytes:      the serialised ModelProto, uploaded as a blob (onnx_blob_id)
    parameter_names: the ONNX initialisers that are θ, in model.parameters() order
    constant_names:  every other float initialiser (buffers, exporter constants)
    param_names:     the torch names of the same tensors (named_parameters()), reported in
                     Result.per_parameter
    params:          θ = parameters_to_vector(model.parameters()) as float64, or checkpoints
                     [B, N] (with_params)
    input_shape:     the per-example input shape the module was exported for
    """

    def __init__(self, onnx_bytes, parameter_names, constant_names, param_names, params,
                 input_shape, param_shapes=None):
        self.onnx_bytes = bytes(onnx_bytes)
        self.parameter_names = list(parameter_names)
        self.constant_names = list(constant_names)
        self.param_names = list(param_names)
        self.params = params
        self.input_shape = tuple(int(d) for d in input_shape)
        self.param_shapes = [tuple(s) for s in (param_shapes or [])]

    @property
    def num_params(self):
        return int(sum(int(np.prod(s)) for s in self.param_shapes)) if self.param_shapes else \
            int(np.asarray(self.params).shape[-1])

    def with_params(self, params):
        """The same graph at other parameters (a vector [N] or checkpoints [B, N], in
        parameters_to_vector order)."""
        return TorchModel(self.onnx_bytes, self.parameter_names, self.constant_names,
                          self.param_names, params, self.input_shape, self.param_shapes)

    def read(self):
        return self.onnx_bytes

    def save(self, path):
        """Writes the exported .onnx file (for `basin analyze --model`)."""
        with open(path, "wb") as f:
            f.write(self.onnx_bytes)

    def __repr__(self):
        return (f"TorchModel(input {list(self.input_shape)}, {len(self.parameter_names)} parameter "
                f"tensors, N={self.num_params}, {len(self.constant_names)} constants)")


@contextlib.contextmanager
def _dedup_by_data_pointer_only(torch):
    """The exporter merges initialisers with equal VALUES when the module is in eval mode
    (_jit_pass_onnx_deduplicate_initializers(graph, params, is_train=False)); with is_train=True
    it merges only tensors sharing storage (tied weights), which is what θ means."""
    orig = getattr(torch._C, "_jit_pass_onnx_deduplicate_initializers", None)
    if orig is None:
        yield
        return

    def by_pointer(graph, params_dict, is_train):
        return orig(graph, params_dict, True)

    torch._C._jit_pass_onnx_deduplicate_initializers = by_pointer
    try:
        yield
    finally:
        torch._C._jit_pass_onnx_deduplicate_initializers = orig


@contextlib.contextmanager
def _composite_attention(torch, module):
    """torch's eval-mode fast paths (nn.TransformerEncoderLayer, nn.MultiheadAttention with
    batch_first) call fused kernels the ONNX exporter cannot write
    (aten::_transformer_encoder_layer_fwd, _native_multi_head_attention) unless grad is enabled
    and a parameter requires it: export with grad on and every parameter requiring it, so the
    module is written as its composite ops (the same function)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p, r in flags:
            p.requires_grad_(r)


@contextlib.contextmanager
def _eval_mode(module):
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def initializers(onnx_bytes):
    """{name: numpy array} of a ModelProto's graph initialisers, in file order (a minimal
    protobuf walk, so the onnx package is not needed)."""
    from .models import _pb_fields, _pb_iter, _varint
    out = {}
    for graph in _pb_fields(onnx_bytes, 7):          # ModelProto.graph
        for tensor in _pb_fields(graph, 5):           # GraphProto.initializer
            dims, dtype, name, raw = [], 1, "", None
            typed = {}
            for field, wire, value in _pb_iter(tensor):
                if field == 1:                        # dims (varint or packed)
                    if wire == 0:
                        dims.append(value)
                    else:
                        pos = 0
                        while pos < len(value):
                            v, pos = _varint(value, pos)
                            dims.append(v)
                elif field == 2 and wire == 0:
                    dtype = value
                elif field == 8 and wire == 2:
                    name = bytes(value).decode()
                elif field == 9 and wire == 2:
                    raw = bytes(value)
                elif field in (4, 5, 7, 10) and wire == 2:  # packed float/int32/int64/double
                    typed[field] = bytes(value)
            np_dtype = _ONNX_DTYPES.get(dtype)
            if np_dtype is None:
                out[name] = (dtype, None)
                continue
            if raw is not None:
                arr = np.frombuffer(raw, dtype=np.dtype(np_dtype).newbyteorder("<"))
            elif dtype == 1 and 4 in typed:
                arr = np.frombuffer(typed[4], dtype="<f4")
            elif dtype == 11 and 10 in typed:
                arr = np.frombuffer(typed[10], dtype="<f8")
            else:  # int32-packed or varint-packed values: not needed for matching
                arr = None
            if arr is not None:
                arr = arr.reshape(dims) if dims else arr.reshape(())
            out[name] = (dtype, arr)
    return out


def _same_data(param, arr):
    return arr is not None and tuple(arr.shape) == tuple(param.shape) and \
        np.array_equal(arr.astype(np.float64), param)


def map_parameters(named_params, buffer_names, inits):
    """The initialiser standing for each parameter (named_params: [(name, float64 array)] in
    model.parameters() order; inits: initializers()). Returns (parameter_names, constant_names).
    Raises ValueError naming a parameter the export does not hold exactly once."""
    by_name = {}
    unmatched = []
    for i, (name, value) in enumerate(named_params):
        entry = inits.get(name)
        if entry is not None and _same_data(value, entry[1]):
            by_name[name] = i
        else:
            unmatched.append(i)
    chosen = {by_name[n]: n for n in by_name}
    used = set(by_name)
    buffers = set(buffer_names)
    # initialisers not named after a parameter or a buffer: matched by their data
    anonymous = [n for n in inits if n not in used and n not in buffers and
                 inits[n][0] in _FLOAT_TYPES]
    for i in unmatched:
        name, value = named_params[i]
        hits = [n for n in anonymous if n not in used and _same_data(value, inits[n][1])]
        if len(hits) == 1:
            chosen[i] = hits[0]
            used.add(hits[0])
        elif not hits:
            raise ValueError(
                f"parameter '{name}' (shape {list(value.shape)}): not among the exported ONNX "
                "initialisers, by name or by value; the exporter transformed it (fused or folded "
                "it into another tensor) or forward() does not use it, so θ cannot be "
                "parameters_to_vector(model.parameters())")
        else:
            raise ValueError(
                f"parameter '{name}' (shape {list(value.shape)}): the exporter renamed it and "
                f"{len(hits)} initialisers ({', '.join(hits[:4])}) hold the same values; cannot "
                "tell which one it is (give it distinct values, e.g. a random initialisation)")
    # the same tensor exported twice (two initialisers equal to an already matched parameter)
    for n in anonymous:
        if n in used:
            continue
        for i, (name, value) in enumerate(named_params):
            if _same_data(value, inits[n][1]) and value.size > 1 and np.any(value != value.flat[0]):
                raise ValueError(
                    f"parameter '{name}': exported twice (initialisers '{chosen[i]}' and '{n}'); "
                    "a tied weight must stay one tensor")
    parameter_names = [chosen[i] for i in range(len(named_params))]
    constant_names = [n for n in inits if n not in used and inits[n][0] in _FLOAT_TYPES]
    return parameter_names, constant_names


def export(module, example_inputs):
    """Exports `module` (any torch.nn.Module) on `example_inputs` [n, ...] (a few examples are
    enough: the batch axis is symbolic): floats, or integer token ids (exported as int64; the
    server then expects integer inputs). Buffers (a causal mask, running statistics) are
    constants. Returns a TorchModel at parameters_to_vector(module.parameters())."""
    import torch
    from torch import nn

    named = list(module.named_parameters())
    if not named:
        raise ValueError(f"{type(module).__name__}: the module has no parameters")
    first = named[0][1]
    x = example_inputs
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"inputs: shape {list(x.shape)}; expected [n, ...] with n >= 1")
    if x.is_floating_point():
        x = x[: min(int(x.shape[0]), 2)].to(dtype=first.dtype, device=first.device)
    elif x.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        # token ids (an nn.Embedding of the input): exported on the user's own ids, as int64
        x = x[: min(int(x.shape[0]), 2)].to(dtype=torch.int64, device=first.device)
    else:
        raise ValueError(f"inputs: dtype {x.dtype}; expected floating-point inputs or integer "
                         "token ids")

    buf = io.BytesIO()
    with warnings.catch_warnings(), _eval_mode(module), _dedup_by_data_pointer_only(torch), \
            _composite_attention(torch, module):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (x,), buf, export_params=True, do_constant_folding=False,
                              training=torch.onnx.TrainingMode.PRESERVE, opset_version=OPSET,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
                              keep_initializers_as_inputs=False)
        except Exception as e:  # the exporter's own message names the op
            raise ValueError(f"{type(module).__name__}: torch.onnx.export failed: {e}") from e
    onnx_bytes = buf.getvalue()

    values = [(name, p.detach().cpu().to(torch.float64).numpy()) for name, p in named]
    buffer_names = [name for name, _ in module.named_buffers()]
    parameter_names, constant_names = map_parameters(values, buffer_names,
                                                     initializers(onnx_bytes))
    with torch.no_grad():
        theta = nn.utils.parameters_to_vector(module.parameters()).detach().cpu()
        theta = theta.to(torch.float64).numpy().copy()
    shapes = [tuple(p.shape) for _, p in named]
    n_expected = sum(p.numel() for p in module.parameters())
    if theta.size != n_expected or sum(int(np.prod(s)) for s in shapes) != n_expected:
        raise ValueError(f"parameter count: θ has {theta.size} values, model.parameters() "
                         f"{n_expected}")
    return TorchModel(onnx_bytes, parameter_names, constant_names, [n for n, _ in named], theta,
                      tuple(x.shape[1:]), shapes)
