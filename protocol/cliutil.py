"""Small helpers the three command-line programs share.

:func:`run_main` turns expected errors into one clear line on stderr and an exit code,
never a traceback: 1 for a :class:`~protocol.errors.CityopsError` (bad config, bad
input, unreachable service), 130 for Ctrl-C. Unexpected errors keep their traceback,
because those are bugs we want reported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .errors import CityopsError

__all__ = ["run_main"]


def run_main(func: Callable[[], int | None], program: str) -> int:
    try:
        return int(func() or 0)
    except CityopsError as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
