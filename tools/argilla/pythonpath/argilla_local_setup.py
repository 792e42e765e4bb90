"""Prepare a local argilla-server's database in one interpreter.

Runs the server's own CLI commands in order: ``database migrate``,
``database users create_default`` and, with ``--reindex``, ``search-engine reindex``
(which rebuilds the search indices of an existing database in a fresh search engine).
Running them in one process imports argilla-server once instead of once per command.

Usage: python -m argilla_local_setup [--reindex]
"""

from __future__ import annotations

import sys

COMMANDS: list[list[str]] = [
    ["database", "migrate"],
    ["database", "users", "create_default", "--quiet"],
]
REINDEX: list[str] = ["search-engine", "reindex"]


def run_cli(args: list[str]) -> None:
    from argilla_server.cli import app

    try:
        app(args=args, prog_name="argilla_server")
    except SystemExit as stop:
        if stop.code not in (None, 0):
            raise


def main(argv: list[str]) -> int:
    commands = [*COMMANDS, REINDEX] if "--reindex" in argv else COMMANDS
    for command in commands:
        print(f"argilla_server {' '.join(command)}", flush=True)
        run_cli(command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
