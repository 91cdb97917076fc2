#!/usr/bin/env python3
"""The sample chat site: /usr/bin/python3 manage.py runserver (README.md)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)  # client/python: the two packages
REPO = os.path.dirname(os.path.dirname(PYTHON_DIR))


def main() -> None:
    sys.path.insert(1, PYTHON_DIR)
    # The stubs of `cmake -S . -B build && cmake --build build`, unless
    # PYTHONPATH already names a build.
    default_gen = os.path.join(REPO, "build", "client", "python", "gen")
    if os.path.isdir(default_gen):
        sys.path.append(default_gen)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat_site.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
