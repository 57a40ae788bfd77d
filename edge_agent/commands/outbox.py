"""``cityops-agent outbox --config FILE``: how many events wait, how old, how many were
dropped or refused (read-only; safe while the agent runs)."""

from __future__ import annotations

import argparse
import json

from edge_agent.cli import command
from edge_agent.config import load_agent_config
from edge_agent.outbox.inspect import inspect_outbox


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="the agent's config file")
    p.add_argument("--rows", type=int, default=0, metavar="N", help="also list the oldest N rows")
    p.add_argument("--json", action="store_true", help="print JSON")


@command("outbox", "show the outbox: depth, oldest event, delivery states, drops", _configure)
def outbox(args: argparse.Namespace) -> int:
    loaded = load_agent_config(args.config)
    info = inspect_outbox(loaded.outbox_path, rows=args.rows)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"outbox {info['path']}")
    print(f"  depth {info['depth']} rows, {info['bytes']} bytes; oldest {info['oldest_age_s']} s; "
          f"next seq {info['next_seq']}")
    print(f"  states {info['by_state'] or {}}; kinds {info['by_kind'] or {}}")
    print(f"  counters {info['counters'] or {}}; rule states {info['rule_states']}")
    for row in info.get("rows", []):
        print(f"  {row['seq']:>8} {row['state']:<7} {row['kind']:<8} {row['event_id']} "
              f"({row['size']} B, {row['attempts']} attempt(s))")
    return 0
