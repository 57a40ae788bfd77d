"""``python -m training.eval [--json [PATH]]``: the ``eval-model`` command."""

from __future__ import annotations

import argparse
import logging

from protocol.cliutil import run_main

from .cli import add_eval_arguments, run_eval


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.eval", description="evaluate a detector on held-out rendered scenes")
    add_eval_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return run_main(lambda: run_eval(args), "eval-model")


if __name__ == "__main__":
    raise SystemExit(main())
