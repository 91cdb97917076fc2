#!/usr/bin/env python3
"""A program's flags against the table of them in its documentation.

    flags_table_test.py BINARY MARKDOWN

Runs `BINARY --helpfull` and reads every table row of MARKDOWN that starts
with a flag (| `--name` | default | ... |, several names in one row share
its defaults). Fails, naming each difference, unless both list the same
flags with the same defaults: the table cannot drift from the code, whose
defaults are its options structs'.
"""
import re
import subprocess
import sys


def flags_of_binary(binary):
    """{name: default} of the program's own flags (not Abseil's)."""
    run = subprocess.run([binary, "--helpfull"], capture_output=True,
                         text=True, timeout=30)
    text = run.stdout + run.stderr
    flags = {}
    # "  Flags from PATH:" starts each file's section.
    for section in re.split(r"\n  Flags from ", text)[1:]:
        path, _, body = section.partition(":\n")
        if "absl/" in path:
            continue
        for m in re.finditer(r"^    --(\w+) \(.*?\);\s+default: ([^\n]*?);$", body,
                             re.MULTILINE | re.DOTALL):
            default = m.group(2)
            if len(default) >= 2 and default[0] == default[-1] == '"':
                default = default[1:-1]
            flags[m.group(1)] = default
    if not flags:
        sys.exit(f"{binary} --helpfull listed no flags of its own:\n{text}")
    return flags


def flags_of_table(markdown):
    """{name: default} of every | `--flag` | row."""
    flags = {}
    with open(markdown, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("| `--"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            names = re.findall(r"`--(\w+)`", cells[0])
            if cells[1] in ("(empty)", "(required)"):
                defaults = [""] * len(names)
            else:
                defaults = [d.strip().strip("`") for d in cells[1].split(",")]
            if len(defaults) == 1:
                defaults *= len(names)
            if len(defaults) != len(names):
                sys.exit(f"{markdown}: {len(names)} flags but {len(defaults)} "
                         f"defaults in: {line.strip()}")
            flags.update(zip(names, defaults))
    return flags


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, markdown = sys.argv[1:]
    code = flags_of_binary(binary)
    table = flags_of_table(markdown)
    problems = []
    for name in sorted(code.keys() - table.keys()):
        problems.append(f"--{name} (default '{code[name]}') is missing from "
                        f"{markdown}'s flag table")
    for name in sorted(table.keys() - code.keys()):
        problems.append(f"{markdown} documents --{name}, which "
                        f"{binary} does not have")
    for name in sorted(code.keys() & table.keys()):
        if code[name] != table[name]:
            problems.append(f"--{name}: {binary} defaults to '{code[name]}', "
                            f"{markdown} says '{table[name]}'")
    if problems:
        sys.exit("\n".join(problems))
    print(f"{len(code)} flags of {binary} documented in {markdown} with "
          "their defaults")


if __name__ == "__main__":
    main()
