"""Builds presence_client and presence_django with the presence.v1 stubs.

The metadata is in pyproject.toml. This file only adds the build step that
generates the stubs (presence/v1/presence_pb2.py, .pyi and _pb2_grpc.py) from
the API's .proto with protoc and grpc_python_plugin (Debian:
protobuf-compiler, protobuf-compiler-grpc), straight into the build tree:
nothing generated is checked in or written into the sources.

The .proto is looked for in $PRESENCE_PROTO_DIR, then in ./proto (an sdist
carries a copy there), then in ../../proto (this directory inside the
presenced repository). pip builds a local directory in place, so the last
one works for `pip install ./client/python`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import ExecError, FileError

HERE = Path(__file__).resolve().parent
PROTO = Path("presence", "v1", "presence.proto")


def _proto_roots() -> List[Path]:
    roots = [HERE / "proto", HERE.parent.parent / "proto"]
    if os.environ.get("PRESENCE_PROTO_DIR"):
        roots.insert(0, Path(os.environ["PRESENCE_PROTO_DIR"]))
    return roots


def _proto_root() -> Path:
    for root in _proto_roots():
        if (root / PROTO).is_file():
            return root
    raise FileError(
        f"cannot find {PROTO} in any of "
        f"{', '.join(str(root) for root in _proto_roots())}: build from the "
        "presenced repository (pip install ./client/python), or set "
        "PRESENCE_PROTO_DIR to its proto/ directory")


def _tool(variable: str, name: str, package: str) -> str:
    path = os.environ.get(variable) or shutil.which(name)
    if not path:
        raise ExecError(
            f"{name} not found: install Debian's {package} "
            f"(apt-get install {package}), or set {variable} to it")
    return path


class BuildPyWithStubs(build_py):
    """build_py, then protoc into build_lib: the wheel gets the stubs."""

    def run(self) -> None:
        super().run()
        out = Path(self.build_lib)
        (out / "presence" / "v1").mkdir(parents=True, exist_ok=True)
        root = _proto_root()
        plugin = _tool("GRPC_PYTHON_PLUGIN", "grpc_python_plugin",
                       "protobuf-compiler-grpc")
        command = [
            _tool("PROTOC", "protoc", "protobuf-compiler"), f"-I{root}",
            f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"--plugin=protoc-gen-grpc_python={plugin}", str(root / PROTO)]
        self.announce("generating the presence.v1 stubs: " + " ".join(command),
                      level=2)
        result = subprocess.run(command, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise ExecError(f"protoc failed on {root / PROTO}:\n"
                            + result.stderr)
        for package in ("presence", "presence/v1"):
            (out / package / "__init__.py").touch()


class SdistWithProto(sdist):
    """An sdist carries the .proto, so that it builds away from the repo."""

    def make_release_tree(self, base_dir, files) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir, "proto", PROTO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_proto_root() / PROTO, target)


setup(cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProto})
