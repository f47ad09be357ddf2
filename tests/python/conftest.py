"""Shared fixtures for the Python tests that drive the `basin` CLI.

The binary is taken from the environment variable BASIN_BIN (ctest sets it to the build tree's
bin/basin); by default it is build/bin/basin relative to the repository root.  A relative BASIN_BIN is
resolved against the repository root as well, so the tests can be started from any directory.
"""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_BIN = "build/bin/basin"


def _resolve_bin():
    raw = os.environ.get("BASIN_BIN", DEFAULT_BIN)
    path = pathlib.Path(raw)
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


@pytest.fixture(scope="session")
def basin_bin():
    path = _resolve_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"basin binary not found or not executable at {path} "
                    f"(set BASIN_BIN, or build it: cmake --build build --target basin)")
    return str(path)


class RunResult:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def error_lines(self):
        return [line for line in self.stderr.splitlines() if line.startswith("basin: error:")]

    @property
    def error(self):
        """The one `basin: error:` line (asserts there is exactly one)."""
        lines = self.error_lines
        assert len(lines) == 1, f"expected exactly one 'basin: error:' line on stderr, got:\n{self.stderr}"
        return lines[0]

    def json(self):
        assert self.returncode == 0, f"basin failed (exit {self.returncode}):\n{self.stderr}"
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as exc:  # pragma: no cover - diagnostic only
            raise AssertionError(f"stdout is not one JSON object ({exc}):\n{self.stdout[:2000]}")


class Basin:
    """Writes a case's files into a temporary directory and runs `basin analyze --local` on them."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.dir = pathlib.Path(workdir)
        self._counter = 0

    # --- files ---------------------------------------------------------------------------------
    def path(self, name):
        return str(self.dir / name)

    def npy(self, name, array):
        """np.save `array` (as given: dtype, order and shape are kept) and return the path."""
        p = self.dir / name
        with open(p, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        return str(p)

    def raw(self, name, data):
        p = self.dir / name
        mode = "wb" if isinstance(data, (bytes, bytearray)) else "w"
        with open(p, mode) as fh:
            fh.write(data)
        return str(p)

    def spec(self, spec, name=None):
        if name is None:
            self._counter += 1
            name = f"spec{self._counter}.json"
        return self.raw(name, json.dumps(spec))

    # --- running -------------------------------------------------------------------------------
    def run(self, args, timeout=120):
        proc = subprocess.run([self.binary] + [str(a) for a in args], capture_output=True, text=True,
                              timeout=timeout)
        return RunResult(proc)

    def analyze_args(self, spec, params, inputs, targets=None, loss="none", reduction=None,
                     want="jacobian", method=None, dtype=None, extra=(), save_jacobian=None):
        """Build an argument list; numpy arrays are written to files, strings are taken as paths."""
        self._counter += 1
        tag = self._counter
        spec_path = spec if isinstance(spec, str) else self.spec(spec, f"spec{tag}.json")
        params_path = params if isinstance(params, str) else self.npy(f"params{tag}.npy", params)
        inputs_path = inputs if isinstance(inputs, str) else self.npy(f"inputs{tag}.npy", inputs)
        args = ["analyze", "--local", "--model", spec_path, "--params", params_path, "--inputs", inputs_path]
        if targets is not None:
            targets_path = targets if isinstance(targets, str) else self.npy(f"targets{tag}.npy", targets)
            args += ["--targets", targets_path]
        args += ["--loss", loss]
        if reduction is not None:
            args += ["--reduction", reduction]
        if want is not None:
            args += ["--want", want]
        if method is not None:
            args += ["--method", method]
        if dtype is not None:
            args += ["--dtype", dtype]
        if save_jacobian is not None:
            args += ["--save-jacobian", save_jacobian]
        args += list(extra)
        args += ["--json"]
        return args

    def analyze(self, *a, save_jacobian=False, **kw):
        """Run an analysis that must succeed; returns (result dict, G or None)."""
        g_path = self.path(f"G{self._counter + 1}.npy") if save_jacobian else None
        args = self.analyze_args(*a, save_jacobian=g_path, **kw)
        result = self.run(args).json()
        G = np.load(g_path) if save_jacobian else None
        return result, G


@pytest.fixture
def basin(basin_bin, tmp_path):
    return Basin(basin_bin, tmp_path)


def pytest_configure(config):
    config.addinivalue_line("markers", "heavy: a large real model (torchvision resnet18); runs by default, "
                                       "deselect with -m 'not heavy'")
