"""`shop-admin`: the operator's commands on the database (accounts, backup, restore, migrations, forgetting a
customer).

Each command group lives with the store it works on, as a module with `add_commands(subparsers)`;
every subcommand sets `run` (parsed args → exit status).
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.settings import Settings

COMMAND_GROUPS = ("persistence.operators", "persistence.maintenance", "persistence.forget")


def cli_operator() -> str:
    """Who runs a shop-admin command, as the audit names them: shop-admin:<the OS user>."""
    try:
        return f"shop-admin:{getpass.getuser()}"
    except (KeyError, OSError):
        return "shop-admin"


def settings_from_env(error: type[Exception]) -> Settings:
    """The settings from the environment and .env, their secrets masked in whatever is printed from now on; error
    (with a message naming each invalid variable) when they are not valid."""
    from pydantic import ValidationError

    from core import redaction
    from protocol.settings import Settings
    from protocol.validation import problems

    try:
        settings = Settings()
    except ValidationError as exc:
        raise error("configuration is not valid: " + "; ".join(problems(exc, "settings"))) from None
    redaction.configure(settings)
    return settings


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
