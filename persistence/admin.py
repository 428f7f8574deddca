"""`shop-admin`: the operator's commands on the database (accounts, backup, restore, migrations, forgetting a
customer).

Each command group lives with the store it works on, as a module with `add_commands(subparsers)`;
every subcommand sets `run` (parsed args → exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_GROUPS = ("persistence.operators", "persistence.maintenance", "persistence.forget")


def parser() -> argparse.ArgumentParser:
    """The argument parser with every command group's subcommands."""
    p = argparse.ArgumentParser(prog="shop-admin", description="Operator commands of the retouch-shop service.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_GROUPS:
        importlib.import_module(name).add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; settings (DATA_DIR, DATABASE_URL) come from the environment or .env."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
