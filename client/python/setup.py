"""Generates the gRPC stubs (basin/_proto, git-ignored) before setuptools looks for packages,
when they are missing and this is a checkout of the Basin repository (../../proto exists)."""
import os
import subprocess

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
STUB = os.path.join(HERE, "basin", "_proto", "basin", "v1", "basin_pb2_grpc.py")

if not os.path.exists(STUB):
    if not os.path.isdir(os.path.join(HERE, "..", "..", "proto", "basin", "v1")):
        raise SystemExit("basin: basin/_proto (the generated gRPC stubs) is missing and "
                         "../../proto is not here; run client/python/generate_stubs.sh in the "
                         "Basin checkout first")
    subprocess.check_call(["sh", os.path.join(HERE, "generate_stubs.sh")])

setup()
