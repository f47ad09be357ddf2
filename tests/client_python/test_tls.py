"""TLS and mutual TLS (certificates made with the openssl CLI for the test)."""
import os
import shutil
import subprocess

import numpy as np
import pytest

import basin

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls"))

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=basin-test-ca")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, cn in (("server", "localhost"), ("client", "client")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "ext")
    return {k: os.path.join(d, k) for k in ("ca.pem", "server.pem", "server.key", "client.pem",
                                            "client.key")}


def model():
    m = basin.Sequential(2, [{"type": "dense", "out": 3}, {"type": "relu"},
                             {"type": "dense", "out": 1}])
    m.params = np.linspace(-1, 1, m.num_params)
    return m


X = np.random.default_rng(0).normal(size=(5, 2))


def test_tls(make_server, certs):
    s = make_server("--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"])
    with basin.Client(s.address, tls={"ca": certs["ca.pem"]}) as c:
        assert c.analyze(model(), X, loss="none").jacobian.rank > 0
    with basin.Client(s.address) as c:  # plaintext to a TLS server
        with pytest.raises(basin.Unavailable):
            c.info(timeout=5)


def test_mutual_tls(make_server, certs):
    s = make_server("--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
                    "--tls-client-ca", certs["ca.pem"])
    tls = basin.TLS(root_certificates=certs["ca.pem"], certificate_chain=certs["client.pem"],
                    private_key=certs["client.key"])
    with basin.Client(s.address, tls=tls) as c:
        assert c.health() == "SERVING"
        assert c.analyze(model(), X, loss="none").num_examples == 5
    with basin.Client(s.address, tls={"ca": certs["ca.pem"]}) as c:  # no client certificate
        with pytest.raises(basin.BasinError):
            c.info(timeout=5)
    with pytest.raises(ValueError, match="both"):
        basin.Client(s.address, tls={"ca": certs["ca.pem"], "cert": certs["client.pem"]})


def test_cli_analyze_over_mutual_tls(make_server, certs, basin_bin, tmp_path):
    """`basin analyze --server` takes --tls-ca/--tls-cert/--tls-key like the other remote commands."""
    import json
    s = make_server("--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
                    "--tls-client-ca", certs["ca.pem"])
    m = model()
    spec, params, inputs = (os.path.join(tmp_path, f) for f in ("m.json", "p.npy", "X.npy"))
    with open(spec, "w") as f:
        json.dump(m.to_json(), f)
    np.save(params, m.params)
    np.save(inputs, X)
    base = [basin_bin, "analyze", "--server", s.address, "--model", spec, "--params", params,
            "--inputs", inputs, "--loss", "none", "--json", "--tls-ca", certs["ca.pem"]]
    ok = subprocess.run(base + ["--tls-cert", certs["client.pem"], "--tls-key", certs["client.key"],
                                "--timeout", "60"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["num_examples"] == 5
    no_cert = subprocess.run(base, capture_output=True, text=True)
    assert no_cert.returncode != 0
    half = subprocess.run(base + ["--tls-cert", certs["client.pem"]], capture_output=True, text=True)
    assert half.returncode == 2 and "--tls-key" in half.stderr
