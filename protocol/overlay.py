"""How a desired-config overlay combines with a config: JSON Merge Patch (RFC 7386).

Part of the contract of :class:`protocol.messages.DesiredConfig`: the agent merges the
overlay onto its own file with this function, and the hub computes what an agent will
run (a plan's overlay on top of the agent's current one) with the same function.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["merge_patch"]


def merge_patch(base: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7386): mappings merge key by key, ``null`` deletes a key,
    anything else (lists included) replaces. Neither argument is modified."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = copy.deepcopy(dict(base)) if isinstance(base, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out
