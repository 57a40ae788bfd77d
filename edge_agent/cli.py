"""``cityops-agent``: the edge agent's command line.

Subcommands register themselves with :func:`command`; each lives in a module of
:mod:`edge_agent.commands` listed in :data:`COMMAND_MODULES` (adding one is a new module
and one line here). Expected errors print one clear line (``protocol.cliutil.run_main``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_agent import __version__
from protocol.cliutil import run_main
from protocol.logsetup import configure_logging

__all__ = ["COMMAND_MODULES", "Command", "build_parser", "command", "commands", "main"]

PROGRAM = "cityops-agent"

COMMAND_MODULES = (
    "edge_agent.commands.run",
    "edge_agent.commands.check_config",
    "edge_agent.commands.provision",
    "edge_agent.commands.outbox",
    "edge_agent.commands.model",
    "edge_agent.commands.detect",
)

Handler = Callable[[argparse.Namespace], int | None]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Handler


_COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]) -> Callable[[Handler], Handler]:
    """Register ``handler(args) -> exit code`` as ``cityops-agent NAME``."""

    def register(handler: Handler) -> Handler:
        if name in _COMMANDS and _COMMANDS[name].run is not handler:
            raise ValueError(f"command {name!r} is registered twice")
        _COMMANDS[name] = Command(name, help, configure, handler)
        return handler

    return register


def commands() -> dict[str, Command]:
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    return dict(_COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="cityops edge agent: polls sensors, watches cameras, runs rules, delivers events.")
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None,
                        help="log level (default: the config's, else info)")
    parser.add_argument("--log-format", choices=["text", "json"], default=None,
                        help="text for people, json for journald and log shippers")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in commands().values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(handler=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # a real process: run the shipped agent version when one is recorded
        from edge_agent.selfupdate import boot_from_argv

        boot_from_argv(sys.argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is not None else sys.argv[1:]  # what a restart runs again
    configure_logging(args.log_level or "info", args.log_format or "text")
    return run_main(lambda: args.handler(args), PROGRAM)

