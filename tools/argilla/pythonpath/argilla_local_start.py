"""Start argilla-server in two steps, so its slow import overlaps the database setup.

Imports ``argilla_server`` at once, then waits for the line ``start`` on standard input
and runs the server's own ``start`` command with the remaining arguments. Exits with
code 1 if standard input closes first.

Usage: python -m argilla_local_start --host 127.0.0.1 --port 6900
"""

from __future__ import annotations

import sys

GO_LINE = "start"


def main(argv: list[str]) -> int:
    import argilla_server  # noqa: F401  (the expensive part: builds the FastAPI app)
    from argilla_server.cli import app

    print("argilla_server imported; waiting for the database", flush=True)
    if sys.stdin.readline().strip() != GO_LINE:
        return 1
    app(args=["start", *argv], prog_name="argilla_server")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
