#!/usr/bin/env python3
"""Every #include of our code against the map of the tree.

    layering_test.py SOURCE_DIR

docs/architecture.md's "Map of the tree" says what each folder may depend
on; this checks it on the includes, so that the rule is kept, not only
written down. A header of ours is named from the project root ("service/
log.h") or, for the installed libraries, as their users name it
("presence/client.h", "presence/v1/presence.pb.h"). Fails naming each
include that crosses a line the map does not draw.
"""
import os
import re
import subprocess
import sys

# Our include prefixes, and the folders that hold them.
OURS = ("service/", "client/", "gateway/", "tools/", "tests/", "fuzz/",
        "presence/")

# service/'s base (presence_base), for every program of ours.
BASE = ["service/log.h", "service/status_macros.h", "service/proto_time.h",
        "service/program_usage.h"]

# folder -> the include prefixes (of ours) its sources may use, as the map
# draws them. An entry ending in ".h" is one header; otherwise a prefix.
ALLOWED = {
    "service/": ["service/", "presence/v1/", "presence/shard_map.h"],
    "client/": ["client/", "presence/", "service/status_macros.h"],
    "gateway/": ["gateway/", "presence/", *BASE, "service/host_port.h",
                 "service/bearer.h", "service/metrics_server.h",
                 "service/request_validation.h"],
    "tools/": ["tools/", "presence/", *BASE, "service/host_port.h",
               "gateway/jwt.h"],
    "fuzz/": ["fuzz/", "presence/", "service/"],
    "tests/": list(OURS),
}


def our_sources(root):
    """The C++ files of the tree: git's list, or every file below `root`
    where there is no git (a source archive)."""
    try:
        return subprocess.run(
            ["git", "-C", root, "ls-files", "--cached", "--others",
             "--exclude-standard", "*.cc", "*.h", "*.cc.in"],
            capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        found = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(("build", "."))]
            found += [os.path.relpath(os.path.join(folder, f), root)
                      for f in files if f.endswith((".cc", ".h", ".cc.in"))]
        return found


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    files = our_sources(root)
    problems = []
    checked = 0
    for path in files:
        folder = next((f for f in ALLOWED if path.startswith(f)), None)
        if folder is None:
            continue
        with open(os.path.join(root, path), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                m = re.match(r'#include "([^"]+)"', line)
                if not m or not m.group(1).startswith(OURS):
                    continue
                checked += 1
                header = m.group(1)
                if not any(header == a if a.endswith(".h") else
                           header.startswith(a) for a in ALLOWED[folder]):
                    problems.append(
                        f"{path}:{number}: {folder} may not include "
                        f"\"{header}\" (docs/architecture.md, Map of the tree)")
    if problems:
        sys.exit("\n".join(problems))
    if checked == 0:
        sys.exit(f"no includes of ours found under {root}")
    print(f"{checked} includes of ours follow the map of the tree")


if __name__ == "__main__":
    main()
