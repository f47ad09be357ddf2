"""basind under concurrent clients, and the service's overhead against `basin analyze --local`.

    /usr/bin/python3 bench/bench_service.py [--build build] [--seconds 8] [--repeats 5]

Starts a real basind on 127.0.0.1 (free port, temporary --data-dir, --workers 2) from the build
dir (--build, or $BASIN_BUILD_DIR; default build/), talks to it with raw gRPC stubs generated
into a temp dir (protoc + grpc_python_plugin), and prints one markdown table:

* `Analyze` and `SubmitJob` + `GetJob` polled every 2 ms until the job is final, at 1, 8 and 32
  concurrent clients (threads, one channel each), each for --seconds: requests/s and p50/p99
  latency of one client-visible request (for jobs: submit to final state seen).
* the same request through the CLI: `basin analyze --local` against `basin analyze --server`
  (both whole processes, medians of --repeats): the service's own overhead in ms and the ratio.

The request is small on purpose (MLP 8-16-tanh-4, n = 32, mse, jacobian spectrum): it measures
the service, not the engine. Every response is checked (one result, 4·32 = 128 rows of G give
min(128, N=212) = 128 singular values). Default run ≈ 2 minutes.
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stubs(tmp):
    out = os.path.join(tmp, "stubs")
    os.makedirs(out)
    subprocess.run(["protoc", "--python_out=" + out, "--grpc_out=" + out,
                    "--plugin=protoc-gen-grpc=" + shutil.which("grpc_python_plugin"),
                    "-I", os.path.join(ROOT, "proto"), "basin/v1/basin.proto"], check=True)
    sys.path.insert(0, out)
    from basin.v1 import basin_pb2, basin_pb2_grpc
    return basin_pb2, basin_pb2_grpc


def problem(tmp):
    rng = np.random.default_rng(0)
    model = {"input_dim": 8, "layers": [{"type": "dense", "out": 16}, {"type": "tanh"},
                                        {"type": "dense", "out": 4}]}
    N = 8 * 16 + 16 + 16 * 4 + 4
    p, x, y = rng.normal(size=N) * 0.3, rng.normal(size=(32, 8)), rng.normal(size=(32, 4))
    files = {"model": os.path.join(tmp, "model.json"), "params": os.path.join(tmp, "p.npy"),
             "inputs": os.path.join(tmp, "x.npy"), "targets": os.path.join(tmp, "y.npy")}
    with open(files["model"], "w") as f:
        json.dump(model, f)
    np.save(files["params"], p)
    np.save(files["inputs"], x)
    np.save(files["targets"], y)
    return model, p, x, y, files


def request(pb, model, p, x, y):
    r = pb.AnalyzeRequest(loss=pb.LOSS_MSE, want=pb.Want(jacobian=True))
    r.model.input_dim = model["input_dim"]
    for l in model["layers"]:
        r.model.layers.add(type=l["type"], out=l.get("out", 0))
    for src, a in ((r.params, p), (r.inputs, x), (r.targets, y)):
        src.tensor.dtype = pb.DTYPE_FLOAT64
        src.tensor.shape[:] = a.shape
        src.tensor.data = np.ascontiguousarray(a, dtype="<f8").tobytes()
    return r


def check(pb, resp):
    assert len(resp.results) == 1 and len(resp.results[0].jacobian.singular_values) == 128, resp


class Server:
    def __init__(self, basind, tmp):
        self.port_file = os.path.join(tmp, "ports")
        self.log = open(os.path.join(tmp, "basind.log"), "wb")
        self.proc = subprocess.Popen([basind, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "data"),
                                      "--port-file", self.port_file, "--workers", "2"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.port_file) or os.path.getsize(self.port_file) == 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("basind did not start; see " + self.log.name)
            time.sleep(0.05)
        time.sleep(0.1)
        with open(self.port_file) as f:
            self.address = "127.0.0.1:%d" % int(f.readline())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def one_analyze(pb, stub, req):
    check(pb, stub.Analyze(req, timeout=120))


def one_job(pb, stub, req):
    job_id = stub.SubmitJob(pb.SubmitJobRequest(request=req), timeout=60).job_id
    final = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
    while True:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=60)
        if job.state in final:
            break
        time.sleep(0.002)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job
    check(pb, stub.GetJob(pb.GetJobRequest(job_id=job_id, include_result=True), timeout=60).result)


def load(pb, pbg, address, op, req, clients, seconds):
    """`clients` threads each doing `op` back to back for `seconds`; latencies of all of them."""
    lat, lock = [], threading.Lock()
    window = {}
    # Everyone warms its channel first (not counted); the window opens when all are ready.
    barrier = threading.Barrier(clients, action=lambda: window.update(t0=time.monotonic()))

    def client():
        with grpc.insecure_channel(address) as ch:
            stub = pbg.BasinStub(ch)
            op(pb, stub, req)
            barrier.wait()
            stop_at = window["t0"] + seconds
            mine = []
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                op(pb, stub, req)
                mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        for f in [ex.submit(client) for _ in range(clients)]:
            f.result()
    wall = time.monotonic() - window["t0"]  # to the end of the last request
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3
    return len(lat) / wall, pct(0.5), pct(0.99), len(lat)


def cli_times(basin, files, mode, repeats):
    args = [basin, "analyze", *mode, "--model", files["model"], "--params", files["params"],
            "--inputs", files["inputs"], "--targets", files["targets"], "--loss", "mse", "--json"]
    out = []
    for _ in range(repeats + 1):  # the first is a warm-up (page cache), not counted
        t0 = time.perf_counter()
        r = subprocess.run(args, capture_output=True, text=True)
        out.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise RuntimeError(" ".join(args) + ": " + r.stderr)
        assert len(json.loads(r.stdout)["jacobian"]["singular_values"]) == 128
    return statistics.median(out[1:]) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("BASIN_BUILD_DIR", os.path.join(ROOT, "build")))
    ap.add_argument("--seconds", type=float, default=8, help="per load row (default 8)")
    ap.add_argument("--repeats", type=int, default=5, help="CLI runs per mode (default 5)")
    ap.add_argument("--clients", default="1,8,32")
    a = ap.parse_args()
    basind, basin = os.path.join(a.build, "bin", "basind"), os.path.join(a.build, "bin", "basin")
    tmp = tempfile.mkdtemp(prefix="basin-bench-service-")
    server = None
    try:
        pb, pbg = stubs(tmp)
        model, p, x, y, files = problem(tmp)
        req = request(pb, model, p, x, y)
        server = Server(basind, tmp)
        load_before = os.getloadavg()[0]
        print("| case | clients | requests | req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, op in (("Analyze", one_analyze), ("SubmitJob+GetJob", one_job)):
            for c in [int(v) for v in a.clients.split(",")]:
                rps, p50, p99, count = load(pb, pbg, server.address, op, req, c, a.seconds)
                print("| %s | %d | %d | %.1f | %.1f | %.1f |" % (name, c, count, rps, p50, p99), flush=True)
        local = cli_times(basin, files, ["--local"], a.repeats)
        remote = cli_times(basin, files, ["--server", server.address], a.repeats)
        print()
        print("| `basin analyze` (same request, median of %d processes) | ms |" % a.repeats)
        print("|---|---:|")
        print("| --local | %.1f |" % local)
        print("| --server (loopback basind) | %.1f |" % remote)
        print("| service overhead | %.1f (ratio %.2f) |" % (remote - local, remote / local))
        print()
        print("load average (1 min) before: %.2f, after: %.2f; %s" % (
            load_before, os.getloadavg()[0], time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    finally:
        if server:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
