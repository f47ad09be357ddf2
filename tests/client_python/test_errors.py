"""Bad input raises the basin.BasinError subclass matching the server's status, with its
message; client-side mistakes raise ValueError before anything is sent."""
import os

import grpc
import numpy as np
import pytest

import basin


def small_model(params=None):
    m = basin.Sequential(2, [{"type": "dense", "out": 3}, {"type": "tanh"},
                             {"type": "dense", "out": 2}])
    m.params = np.linspace(-1, 1, m.num_params) if params is None else params
    return m


X = np.random.default_rng(0).normal(size=(4, 2))
Y = np.zeros((4, 2))


def test_wrong_param_length(client):
    m = small_model(np.zeros(small_model().num_params - 1))
    with pytest.raises(basin.InvalidArgument) as e:
        client.analyze(m, X, Y)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "params" in e.value.message
    assert isinstance(e.value, basin.BasinError) and isinstance(e.value, ValueError)


def test_per_parameter_names_wrong_count_or_empty(client):
    m = small_model()
    m.param_names = ["0.weight", "0.bias", "2.weight"]  # four tensors
    with pytest.raises(basin.InvalidArgument, match=r"param_names: got 3 names, expected 4"):
        client.analyze(m, X, Y, want="jacobian,per_parameter")
    m.param_names = ["a", "", "c", "d"]
    with pytest.raises(basin.InvalidArgument, match=r"param_names\[1\]: empty"):
        client.analyze(m, X, Y, want="per_parameter")
    with pytest.raises(ValueError, match="per_parameter"):  # the client lists the valid words
        client.analyze(small_model(), X, Y, want="jacobian,per_layer")
    # the names given are the names reported
    m.param_names = ["a", "b", "c", "d"]
    r = client.analyze(m, X, Y, want="per_parameter")
    assert [p.name for p in r.per_parameter] == ["a", "b", "c", "d"]


def test_nan_inputs(client):
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(basin.InvalidArgument, match="inputs"):
        client.analyze(small_model(), bad, Y)


def test_nan_params(client):
    p = small_model().params.copy()
    p[0] = np.inf
    with pytest.raises(basin.InvalidArgument, match="params"):
        client.analyze(small_model(p), X, Y)


def test_bad_labels(client):
    with pytest.raises(basin.InvalidArgument) as e:
        client.analyze(small_model(), X, np.array([0, 1, 2, 1]), loss="cross_entropy")
    assert "target" in e.value.message or "label" in e.value.message
    with pytest.raises(basin.InvalidArgument):
        client.analyze(small_model(), X, np.array([0, -1, 1, 1]), loss="cross_entropy")


def test_wrong_target_shape(client):
    with pytest.raises(basin.InvalidArgument, match="targets"):
        client.analyze(small_model(), X, np.zeros((4, 3)))


def test_unknown_layer(client):
    m = basin.Sequential(2, [{"type": "dense", "out": 3}, {"type": "swish"},
                             {"type": "dense", "out": 1}], np.zeros(13))
    with pytest.raises(basin.InvalidArgument, match="swish"):
        client.analyze(m, X, np.zeros((4, 1)))


def test_missing_targets(client):
    with pytest.raises(basin.InvalidArgument, match="targets"):
        client.analyze(small_model(), X, None, loss="mse")


def test_unknown_job(client):
    with pytest.raises(basin.NotFound):
        client.job("no-such-job")


def _raw_request(blob_field, blob_id):
    req = basin._pb2.AnalyzeRequest(loss=basin._pb2.LOSS_NONE)
    req.model.CopyFrom(small_model()._proto(basin._pb2))
    req.params.tensor.CopyFrom(basin._pb2.Tensor(
        dtype=basin._pb2.DTYPE_FLOAT64, shape=[small_model().num_params],
        data=small_model().params.tobytes()))
    req.inputs.tensor.CopyFrom(basin._pb2.Tensor(dtype=basin._pb2.DTYPE_FLOAT64, shape=[4, 2],
                                                 data=X.tobytes()))
    getattr(req, blob_field).blob_id = blob_id
    return req


def test_unknown_blob_id_is_not_found(client):
    # bypass the client's cache to reference an id the server never saw: NOT_FOUND (an entity
    # the request refers to does not exist for this caller), naming the field and what was
    # expected -- for Analyze and, with the request. prefix, for SubmitJob
    req = _raw_request("params", "sha256:" + "0" * 64)
    with pytest.raises(basin.NotFound) as e:
        client._call("Analyze", req)
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert isinstance(e.value, LookupError) and not isinstance(e.value, basin.InvalidArgument)
    assert e.value.message.startswith("params.blob_id: unknown blob 'sha256:000")
    assert "expected the id of a blob you uploaded with UploadBlob" in e.value.message
    with pytest.raises(basin.NotFound) as e:
        client._call("SubmitJob", basin._pb2.SubmitJobRequest(request=req))
    assert e.value.message.startswith("request.params.blob_id: unknown blob 'sha256:000")
    assert str(e.value).startswith("NOT_FOUND: request.params.blob_id")


def test_malformed_blob_id_is_invalid_argument(client):
    # not an id at all: INVALID_ARGUMENT, whatever the server holds
    with pytest.raises(basin.InvalidArgument, match=r"inputs\.blob_id: '\.\./x' is not a blob id"):
        client._call("Analyze", _raw_request("inputs", "../x"))


def test_other_users_blob_is_not_found(make_server, tmp_path):
    tokens = os.path.join(tmp_path, "tokens")
    with open(tokens, "w") as f:
        f.write("tok-a alice\ntok-b bob\n")
    s = make_server("--tokens", tokens)
    with basin.Client(s.address, token="tok-a") as alice, \
            basin.Client(s.address, token="tok-b") as bob:
        blob = alice.upload_array(X)
        alice._call("Analyze", _raw_request("inputs", blob))
        # exactly what a blob nobody uploaded gets: ids are not secrets, ownership is
        with pytest.raises(basin.NotFound, match=r"inputs\.blob_id: unknown blob") as e:
            bob._call("Analyze", _raw_request("inputs", blob))
        assert "alice" not in e.value.message
        never = "sha256:" + "f" * 64
        with pytest.raises(basin.NotFound) as e2:
            bob._call("Analyze", _raw_request("inputs", never))
        assert e.value.message.replace(blob, "ID") == e2.value.message.replace(never, "ID")


def test_submit_reuploads_a_blob_the_server_lost(make_server):
    """The NOT_FOUND of a blob the Client had cached makes submit() rebuild the request and
    upload again, once (analyze() is covered in test_blobs.py)."""
    s = make_server()
    Xb = np.random.default_rng(3).normal(size=(2000, 2))
    with basin.Client(s.address, inline_limit=1024) as c:
        from basin.client import _as_wire_array, _npy_bytes
        import hashlib
        stale = "sha256:" + hashlib.sha256(_npy_bytes(_as_wire_array(Xb, "x"))).hexdigest()
        c._blobs[stale] = stale  # pretend it was uploaded before
        r = c.submit(small_model(), Xb, np.zeros((2000, 2))).result(timeout=60)
        assert r.num_examples == 2000
        assert c.upload_count >= 1 and stale in c._blobs


def test_client_side_errors(client):
    with pytest.raises(ValueError, match="params"):
        client.analyze(basin.Sequential(2, [{"type": "dense", "out": 1}]), X)
    with pytest.raises(ValueError, match="want"):
        client.analyze(small_model(), X, Y, want=("jacobian", "hessians"))
    with pytest.raises(ValueError, match="loss"):
        client.analyze(small_model(), X, Y, loss="l1")
    with pytest.raises(ValueError, match="method"):
        client.analyze(small_model(), X, Y, method="qr")
    with pytest.raises(ValueError, match="dtype"):
        client.analyze(small_model(), X.astype(object), Y)
    with pytest.raises(ValueError, match="onnx"):
        client.analyze("model.txt", X, Y)
    with pytest.raises(ValueError, match="unknown keys"):
        basin.Sequential(2, [{"type": "dense", "out": 1, "units": 3}])


def test_limits(make_server):
    s = make_server("--max-hessian-params", "10")
    with basin.Client(s.address) as c:
        with pytest.raises(basin.ResourceExhausted) as e:
            c.analyze(small_model(), X, Y, want=("jacobian", "hessian"))
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # the default want follows the server's Hessian limit, like the CLI's --hessian-limit
        r = c.analyze(small_model(), X, Y)
        assert r.hessian is None and r.ggn is not None


def test_layer_limit_and_malformed_bytes(make_server):
    """basind --max-layers: the limit is in info()["limits"] and a deeper model is
    ResourceExhausted naming it; bytes that are not a request message are INVALID_ARGUMENT."""
    s = make_server("--max-layers", "2")
    with basin.Client(s.address) as c:
        assert c.info()["limits"]["max_layers"] == 2
        with pytest.raises(basin.ResourceExhausted, match="max_layers"):
            c.analyze(small_model(), X, Y)  # 3 layers
    with grpc.insecure_channel(s.address) as ch:
        call = ch.unary_unary("/basin.v1.Basin/Analyze", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            call(b"\x0a\x64truncated", timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "basin.v1.AnalyzeRequest" in e.value.details()


def test_authentication(make_server, tmp_path):
    tokens = os.path.join(tmp_path, "tokens")
    with open(tokens, "w") as f:
        f.write("s3cret alice\n")
    s = make_server("--tokens", tokens)
    with basin.Client(s.address) as c:
        with pytest.raises(basin.Unauthenticated):
            c.info()
    with basin.Client(s.address, token="wrong") as c:
        with pytest.raises(basin.Unauthenticated, match="token"):
            c.analyze(small_model(), X, Y)
    with basin.Client(s.address, token="s3cret") as c:
        assert c.info()["user"] == "alice"
        assert c.analyze(small_model(), X, Y).jacobian.rank > 0


def test_unavailable():
    with basin.Client("127.0.0.1:1") as c:
        with pytest.raises(basin.Unavailable):
            c.info(timeout=5)


def test_deadline(client):
    m = basin.Sequential(4, [{"type": "dense", "out": 40}, {"type": "tanh"},
                             {"type": "dense", "out": 40}, {"type": "tanh"},
                             {"type": "dense", "out": 3}])
    m.params = np.random.default_rng(0).normal(size=m.num_params) * 0.3
    Xb = np.random.default_rng(1).normal(size=(200, 4))
    with pytest.raises(basin.DeadlineExceeded):
        client.analyze(m, Xb, np.zeros((200, 3)), want=("jacobian", "ggn", "hessian"),
                       timeout=0.001)


def _onnx_file(tmp_path, nodes, name):
    """A tiny ONNX graph x[?,2] -> y written with onnx.helper (opset 13)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [2, 2], [1, 0, 0, 1])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])], inits)
    path = os.path.join(tmp_path, name)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_onnx_unsupported_op_is_unimplemented_naming_the_node(client, tmp_path):
    from onnx import helper
    path = _onnx_file(tmp_path, [helper.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1),
                                 helper.make_node("LpNormalization", ["h"], ["y"], name="act")], "lp.onnx")
    with pytest.raises(basin.Unimplemented) as e:
        client.analyze(path, X, Y, loss="mse")
    assert e.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert "LpNormalization" in e.value.message and "act" in e.value.message


def test_onnx_malformed_file_is_invalid_argument(client, tmp_path):
    path = os.path.join(tmp_path, "garbage.onnx")
    with open(path, "wb") as f:
        f.write(b"\x08\x07this is not an onnx model" * 10)
    with pytest.raises(basin.InvalidArgument):
        client.analyze(basin.OnnxModel(path, params=np.zeros(6)), X, Y, loss="mse")
