"""Large arrays go through UploadBlob once per Client (content-addressed, sha256 on the client)."""
import hashlib

import numpy as np

import basin


def model():
    m = basin.Sequential(40, [{"type": "dense", "out": 3}, {"type": "tanh"},
                              {"type": "dense", "out": 1}])
    m.params = np.random.default_rng(0).normal(size=m.num_params) * 0.2
    return m


def big_inputs():
    return np.random.default_rng(1).normal(size=(4000, 40))  # 1.28 MB > 1 MiB


def test_large_inputs_uploaded_once(client):
    X = big_inputs()
    assert X.nbytes > 1 << 20
    m = model()
    r1 = client.analyze(m, X, loss="none")
    assert client.upload_count == 1
    assert client.uploaded_bytes > X.nbytes  # the .npy file: header + data
    r2 = client.analyze(m, X, loss="none")
    assert client.upload_count == 1  # same content: referenced by id, not sent again
    np.testing.assert_array_equal(r1.jacobian.singular_values, r2.jacobian.singular_values)
    # an equal array (different object) is recognised by content
    r3 = client.analyze(m, X.copy(), np.zeros((4000, 1)), loss="mse", want=("jacobian",))
    assert client.upload_count == 1
    assert r3.jacobian.rank == r1.jacobian.rank
    # small arrays stay inline
    client.analyze(m, X[:10], loss="none")
    assert client.upload_count == 1


def test_blob_and_inline_agree(server):
    X = big_inputs()[:2000]
    with basin.Client(server.address) as inline, \
            basin.Client(server.address, inline_limit=0, chunk_bytes=64 << 10) as blobs:
        a = inline.analyze(model(), X, loss="none")
        b = blobs.analyze(model(), X, loss="none")  # params and inputs as blobs, 64 KiB chunks
        assert inline.upload_count == 0 and blobs.upload_count == 2
        np.testing.assert_array_equal(a.jacobian.singular_values, b.jacobian.singular_values)
        np.testing.assert_array_equal(a.outputs, b.outputs)


def test_upload_id_is_sha256_and_chunked(client):
    data = np.random.default_rng(2).bytes(9 << 20)  # 3 chunks of <= 4 MiB
    blob_id = client.upload(data)
    assert blob_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert client.upload(data) == blob_id and client.upload_count == 1


def test_checkpoint_batch_as_blob(client):
    m = model()
    P = np.stack([m.params * (1 + 0.1 * i) for i in range(4)])
    X = big_inputs()[:200]
    with basin.Client(client.address, inline_limit=1024) as c:
        rs = c.analyze(m.with_params(P), X, loss="none")
        assert c.upload_count == 2  # params [4, N] and inputs
    assert [r.jacobian.rank for r in rs] == [client.analyze(m.with_params(p), X, loss="none")
                                             .jacobian.rank for p in P]


def test_reupload_when_server_lost_blob(make_server):
    """A Client's cache can outlive the server's copy (e.g. a server restarted with a temporary
    data dir): the request is rebuilt and the blob uploaded again, once."""
    s = make_server()
    X = big_inputs()
    with basin.Client(s.address) as c:
        from basin.client import _as_wire_array, _npy_bytes
        stale = "sha256:" + hashlib.sha256(_npy_bytes(_as_wire_array(X, "x"))).hexdigest()
        c._blobs[stale] = stale  # pretend it was uploaded before
        r = c.analyze(model(), X, loss="none")
        assert c.upload_count == 1 and r.num_examples == 4000
