"""Models a Basin server accepts: a layer list + parameters (Sequential), a PyTorch
nn.Sequential converted on the client, or an ONNX file uploaded as a blob."""
import json
import os

import numpy as np

ACTIVATIONS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "softplus", "silu")
_LAYER_KEYS = {"type", "out", "bias", "alpha"}


class Sequential:
    """A sequential MLP: `input_dim`, a layer list like the JSON model spec, and parameters.

    layers: dicts such as {"type": "dense", "out": 16, "bias": True}, {"type": "tanh"},
    {"type": "leaky_relu", "alpha": 0.1}. Layer types are not checked here: the server names
    an unknown one in an InvalidArgument error.

    params: None, a flat vector [N] (PyTorch parameters_to_vector order: each dense layer's
    weight [out, in] row-major, then its bias), or several checkpoints — a 2-D array [B, N] or
    a list of vectors — which makes `Client.analyze` return a list of B Results.
    """

    def __init__(self, input_dim, layers, params=None, flatten_inputs=False, param_names=None):
        self.input_dim = int(input_dim)
        # names of the parameter tensors (per dense layer: weight, then bias), reported in
        # Result.per_parameter; None: nn.Sequential's "0.weight", "0.bias", "2.weight", ...
        self.param_names = list(param_names) if param_names else None
        # from a torch model starting with nn.Flatten: inputs [n, ...] are reshaped to [n, -1]
        self.flatten_inputs = bool(flatten_inputs)
        self.layers = []
        for i, layer in enumerate(layers):
            if isinstance(layer, str):
                layer = {"type": layer}
            if not isinstance(layer, dict) or "type" not in layer:
                raise ValueError(f"layers[{i}]: expected a dict with a 'type', got {layer!r}")
            extra = set(layer) - _LAYER_KEYS
            if extra:
                raise ValueError(f"layers[{i}]: unknown keys {sorted(extra)}; "
                                 f"expected some of {sorted(_LAYER_KEYS)}")
            self.layers.append(dict(layer))
        self.params = params

    # -- construction helpers ----------------------------------------------------------------
    @classmethod
    def from_json(cls, spec, params=None):
        """From the CLI's JSON model spec: a dict, a JSON string, or a path to a .json file."""
        if isinstance(spec, (str, os.PathLike)) and os.path.exists(spec):
            with open(spec) as f:
                spec = json.load(f)
        elif isinstance(spec, str):
            spec = json.loads(spec)
        return cls(spec["input_dim"], spec["layers"], params)

    def with_params(self, params):
        """The same architecture with other parameters (a vector, or checkpoints [B, N])."""
        return Sequential(self.input_dim, self.layers, params, self.flatten_inputs, self.param_names)

    def to_json(self):
        """The CLI's JSON model spec (what `basin analyze --model` reads)."""
        return {"input_dim": self.input_dim, "layers": [dict(layer) for layer in self.layers]}

    # -- sizes -------------------------------------------------------------------------------
    @property
    def num_params(self):
        n, width = 0, self.input_dim
        for layer in self.layers:
            if layer["type"] == "dense":
                out = int(layer["out"])
                n += width * out + (out if layer.get("bias", True) else 0)
                width = out
        return n

    @property
    def num_outputs(self):
        width = self.input_dim
        for layer in self.layers:
            if layer["type"] == "dense":
                width = int(layer["out"])
        return width

    def __repr__(self):
        parts = [str(self.input_dim)]
        for layer in self.layers:
            if layer["type"] == "dense":
                parts.append(f"dense({layer['out']}{'' if layer.get('bias', True) else ', no bias'})")
            elif layer["type"] == "leaky_relu" and "alpha" in layer:
                parts.append(f"leaky_relu({layer['alpha']})")
            else:
                parts.append(layer["type"])
        return f"Sequential({' -> '.join(parts)}, N={self.num_params})"

    def _proto(self, pb2):
        m = pb2.Model(input_dim=self.input_dim)
        for layer in self.layers:
            pl = m.layers.add(type=str(layer["type"]))
            if "out" in layer:
                pl.out = int(layer["out"])
            if "bias" in layer:
                pl.bias = bool(layer["bias"])
            if "alpha" in layer:
                pl.alpha = float(layer["alpha"])
        return m


class OnnxModel:
    """An ONNX file (Gemm/MatMul+Add and supported activations), uploaded as a blob and
    imported by the server. Its initialisers are the parameters unless `params` is given
    (a vector [N] or checkpoints [B, N], as for Sequential)."""

    def __init__(self, path, params=None):
        self.path = os.fspath(path)
        self.params = params

    def read(self):
        with open(self.path, "rb") as f:
            return f.read()

    def num_initializer_values(self):
        """Total size of the graph's initialisers (≈ N, for the Hessian default); None if the
        file cannot be parsed. A minimal protobuf wire-format walk: ModelProto.graph (7) ->
        GraphProto.initializer (5) -> TensorProto.dims (1)."""
        try:
            data = self.read()
            total = 0
            for graph in _pb_fields(data, 7):
                for tensor in _pb_fields(graph, 5):
                    dims = []
                    for field, wire, value in _pb_iter(tensor):
                        if field == 1 and wire == 0:
                            dims.append(value)
                        elif field == 1 and wire == 2:  # packed
                            pos = 0
                            while pos < len(value):
                                v, pos = _varint(value, pos)
                                dims.append(v)
                    total += int(np.prod(dims)) if dims else 1
            return total
        except Exception:
            return None

    def __repr__(self):
        return f"OnnxModel({self.path!r})"


def _varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def _pb_iter(buf):
    """(field number, wire type, value) for each field of a serialized protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, wire, value


def _pb_fields(buf, number):
    return [v for f, w, v in _pb_iter(buf) if f == number and w == 2]


def _is_torch_module(obj):
    """Whether obj is a torch.nn.Module (any subclass, user-defined too), without importing
    torch."""
    return any(c.__name__ == "Module" and (c.__module__ or "").startswith("torch.nn")
               for c in type(obj).__mro__)


def _flatten_sequential(module, nn):
    for child in module.children():
        if isinstance(child, nn.Sequential):
            yield from _flatten_sequential(child, nn)
        else:
            yield child


def _chain_layers(module, nn):
    """The layer list of a torch module that is a chain of Linear and supported activations
    (Identity and Dropout are inference no-ops; Flatten(1, -1) flattens the inputs), with
    whether inputs are flattened; or (None, why) when it is anything else."""
    if not isinstance(module, nn.Sequential):
        return None, f"{type(module).__name__} is not a torch.nn.Sequential"
    layers, input_dim, flatten = [], None, False
    for i, m in enumerate(_flatten_sequential(module, nn)):
        name = f"module {i} ({type(m).__name__})"
        if len(list(m.parameters(recurse=False))) and not isinstance(m, nn.Linear):
            return None, f"{name} has parameters"
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                return None, f"{name}: Flatten(start_dim={m.start_dim}, end_dim={m.end_dim})"
            if input_dim is None:
                flatten = True
        elif isinstance(m, nn.Linear):
            if input_dim is None:
                input_dim = m.in_features
            layers.append({"type": "dense", "out": int(m.out_features), "bias": m.bias is not None})
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            pass  # inference: the identity, on every route
        elif isinstance(m, nn.LeakyReLU):
            layers.append({"type": "leaky_relu", "alpha": float(m.negative_slope)})
        elif isinstance(m, nn.ReLU):
            layers.append({"type": "relu"})
        elif isinstance(m, nn.Tanh):
            layers.append({"type": "tanh"})
        elif isinstance(m, nn.Sigmoid):
            layers.append({"type": "sigmoid"})
        elif isinstance(m, nn.GELU) and getattr(m, "approximate", "none") == "none":
            layers.append({"type": "gelu"})
        elif isinstance(m, nn.Softplus) and m.beta == 1 and m.threshold == 20:
            layers.append({"type": "softplus"})
        elif isinstance(m, nn.SiLU):
            layers.append({"type": "silu"})
        else:
            return None, f"{name} is not a layer of the chain shorthand"
    if input_dim is None:
        return None, "the nn.Sequential has no Linear layer"
    return (layers, input_dim, flatten), None


def from_torch(module, example_inputs=None, export=None):
    """A torch.nn.Module as a model Basin analyses at parameters_to_vector(module.parameters())
    (float64), in inference (eval) mode.

    A chain of Linear and the activations Basin has (ReLU, LeakyReLU, Tanh, Sigmoid, exact GELU,
    Softplus(1, 20), SiLU; Identity, Dropout and Flatten(1, -1) as in eval mode) becomes the
    chain shorthand, a basin.Sequential. Any other module (convolutions, pooling, BatchNorm,
    LayerNorm/GroupNorm, residual blocks, tied weights, ...) is exported to ONNX on the client
    (basin.torch_export) on `example_inputs` [n, ...] and becomes a basin.TorchModel whose
    parameters are exactly module.parameters(). export=True exports a chain too; export=False
    refuses anything but a chain. torch is imported here only.
    """
    import torch
    from torch import nn

    if not isinstance(module, nn.Module):
        raise ValueError(f"expected a torch.nn.Module, got {type(module).__name__}")
    chain, why = (None, "export=True") if export else _chain_layers(module, nn)
    if chain is not None:
        layers, input_dim, flatten = chain
        with torch.no_grad():
            params = nn.utils.parameters_to_vector(module.parameters()).detach().cpu()
            params = params.to(torch.float64).numpy().copy()
        names = [name for name, _ in module.named_parameters()]
        seq = Sequential(input_dim, layers, params, flatten_inputs=flatten, param_names=names)
        if params.size != seq.num_params:  # e.g. shared (tied) parameters
            chain = None
            why = f"its {params.size} parameters are not the {seq.num_params} its layers imply"
        else:
            return seq
    if export is False:
        raise ValueError(f"{type(module).__name__}: not a chain of Linear layers and activations "
                         f"({why}); pass export=True (or leave export unset) to export it to ONNX")
    if example_inputs is None:
        raise ValueError(f"{type(module).__name__}: {why}, so it is exported to ONNX, which needs "
                         "example inputs: basin.from_torch(module, inputs) (Client.analyze "
                         "passes its inputs)")
    from .torch_export import export as export_onnx
    return export_onnx(module, example_inputs)


def to_model(model, inputs=None):
    """Sequential | OnnxModel | TorchModel for anything `Client.analyze` accepts as a model
    (`inputs`: the examples a torch module is exported on)."""
    from .torch_export import TorchModel
    if isinstance(model, (Sequential, OnnxModel, TorchModel)):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if path.lower().endswith(".onnx"):
            return OnnxModel(path)
        if path.lower().endswith(".json"):
            raise ValueError(f"{path}: a JSON model spec needs parameters; use "
                             "basin.Sequential.from_json(path, params)")
        raise ValueError(f"{path}: expected a path to an .onnx file")
    if _is_torch_module(model):
        return from_torch(model, inputs)
    raise ValueError(f"unsupported model type {type(model).__name__}; expected basin.Sequential, "
                     "a torch.nn.Module, or a path to an .onnx file")
