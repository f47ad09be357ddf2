"""Fixtures for the Python client suite: a real basind on a free loopback port.

Environment:
  BASIN_BASIND  the server binary (default build/bin/basind, else build-service/bin/basind;
                when unset and neither exists the suite is skipped)
  BASIN_BIN     the CLI for parity checks (default build/bin/basin)
  BASIN_PROTO_DIR  generated stubs (the CMake target basin_python_stubs writes
                <build>/python/_proto); when no stubs are found, generate_stubs.sh runs first.
"""
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PKG = os.path.join(ROOT, "client", "python")
EXAMPLES = os.path.join(ROOT, "examples")
DATA = os.path.join(EXAMPLES, "data")
PY = sys.executable or "/usr/bin/python3"

if PKG not in sys.path:
    sys.path.insert(0, PKG)


def _ensure_stubs():
    try:
        importlib.import_module("basin")
        return
    except ImportError as e:
        if "stubs" not in str(e):
            raise
    subprocess.run(["sh", os.path.join(PKG, "generate_stubs.sh")], check=True)
    for m in [m for m in sys.modules if m == "basin" or m.startswith("basin.")]:
        del sys.modules[m]
    importlib.import_module("basin")


_ensure_stubs()


def _binary(env, defaults):
    path = os.environ.get(env)
    if path:
        path = path if os.path.isabs(path) else os.path.join(ROOT, path)
        if not os.access(path, os.X_OK):
            pytest.exit(f"{env}={path}: not an executable", returncode=2)
        return path
    for d in defaults:
        p = os.path.join(ROOT, d)
        if os.access(p, os.X_OK):
            return p
    return None


BASIND = _binary("BASIN_BASIND", ["build/bin/basind", "build-service/bin/basind"])
BASIN_BIN = _binary("BASIN_BIN", ["build/bin/basin", "build-service/bin/basin"])


class Server:
    """A basind process on 127.0.0.1:<free port> with its own --data-dir."""

    def __init__(self, *extra_args, workers=1):
        if BASIND is None:
            pytest.skip("no basind: set BASIN_BASIND or build build/bin/basind")
        self.dir = tempfile.mkdtemp(prefix="basin-pytest-")
        self.port_file = os.path.join(self.dir, "ports")
        self.log_path = os.path.join(self.dir, "basind.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [BASIND, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(self.dir, "data"),
             "--port-file", self.port_file, "--workers", str(workers), *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise RuntimeError(f"basind exited with {self.proc.returncode}: {self.read_log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("basind did not start in 60 s: " + self.read_log())
            time.sleep(0.05)
        with open(self.port_file) as f:
            self.port = int(f.readline())
        self.address = f"127.0.0.1:{self.port}"

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def client(server):
    import basin
    c = basin.Client(server.address)
    yield c
    c.close()


@pytest.fixture(scope="session")
def basin_bin():
    if BASIN_BIN is None:
        pytest.skip("no basin CLI: set BASIN_BIN or build build/bin/basin")
    return BASIN_BIN


@pytest.fixture
def make_server():
    """Starts extra servers (e.g. with --tokens) for one test; stops them afterwards."""
    started = []

    def make(*args, **kw):
        s = Server(*args, **kw)
        started.append(s)
        return s
    yield make
    for s in started:
        s.stop()
