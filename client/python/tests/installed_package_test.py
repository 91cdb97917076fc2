"""Builds the wheel, installs it into a fresh venv and runs the Python
client's and the Django app's tests against the installed packages.

    /usr/bin/python3 installed_package_test.py  # python_installed_package

The way a user installs them on Debian 12, offline: a venv made with
--system-site-packages, so grpcio, protobuf, Django, DRF and SimpleJWT are
Debian's, and `pip wheel --no-build-isolation` with Debian's setuptools. The
sources (client/python and proto/, in the same layout) are copied to a
temporary directory first, so that the build leaves nothing in the source
tree and runs away from it, and the tests run from a copy too: the source
tree is never on sys.path. Needs $PRESENCED like the tests it runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PYTHON_DIR = TESTS.parent            # client/python
REPO = PYTHON_DIR.parent.parent
# Checked by the installed interpreter: each module comes from the venv,
# and no path of the source tree is importable.
CHECK = """
import sys
from pathlib import Path
import presence_client, presence_django, presence.v1.presence_pb2 as pb
venv, source = Path(sys.prefix).resolve(), Path(sys.argv[1]).resolve()
assert sys.prefix != sys.base_prefix, "not running in the venv"
for module in (presence_client, presence_django, pb):
    where = Path(module.__file__).resolve()
    assert venv in where.parents, f"{module.__name__} from {where}, not {venv}"
for entry in sys.path:
    path = Path(entry or ".").resolve()
    assert path != source and source not in path.parents, \\
        f"the source tree is on sys.path: {entry}"
print("installed:", Path(presence_client.__file__).parent)
"""


def run(command, **kwargs) -> None:
    started = time.monotonic()
    shown = ["<check>" if part is CHECK else str(part) for part in command]
    print("+", " ".join(shown), flush=True)
    subprocess.run(command, check=True, **kwargs)
    print(f"  ({time.monotonic() - started:.1f} s)", flush=True)


def main() -> int:
    if not os.environ.get("PRESENCED"):
        print("set PRESENCED to the presenced binary (ctest does)",
              file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="presence_pip_"))
    try:
        src = work / "src"
        shutil.copytree(
            PYTHON_DIR, src / "client" / "python",
            ignore=shutil.ignore_patterns("tests", "build", "*.egg-info",
                                          "__pycache__", "*.db"))
        shutil.copytree(REPO / "proto", src / "proto")
        tests = work / "tests"
        shutil.copytree(TESTS, tests,
                        ignore=shutil.ignore_patterns("__pycache__"))

        # Only what the venv sees: no PYTHONPATH, and none of the machine's
        # pip settings (a find-links directory, an index).
        env = {name: value for name, value in os.environ.items()
               if name != "PYTHONPATH" and not name.startswith("PIP_")}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1",
                   PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
                   PRESENCE_CPP_CLIENT_SOURCE=str(REPO / "client" /
                                                  "client.cc"))
        run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation",
             "--no-deps", "--wheel-dir", work / "wheels",
             src / "client" / "python"], env=env, cwd=work)
        [wheel] = (work / "wheels").glob("presence_client-*.whl")

        venv = work / "venv"
        run([sys.executable, "-m", "venv", "--system-site-packages", venv])
        python = venv / "bin" / "python"
        # Dependencies resolved too, offline: the extras must be met by
        # Debian's packages through --system-site-packages.
        run([python, "-m", "pip", "install", "--no-index",
             f"{wheel}[django,jwt]"], env=env, cwd=work)

        for command in (
                [python, "-c", CHECK, PYTHON_DIR],
                [python, "-m", "unittest", "test_client"],
                [python, "-m", "django", "test", "--settings",
                 "django_test_settings", "test_django"]):
            run(command, env=env, cwd=tests)
    except subprocess.CalledProcessError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
