"""``cityops-agent run --config FILE``: run the agent until SIGTERM/SIGINT.

SIGTERM and Ctrl-C stop it cleanly (components, then an offline status, then the
outbox is closed with every undelivered event in it); SIGHUP re-reads the config file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from edge_agent.app import AgentApp
from edge_agent.cli import command
from edge_agent.config import load_agent_config
from protocol.logsetup import configure_logging

log = logging.getLogger("edge_agent")


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="the agent's config file (YAML)")


async def _run(app: AgentApp) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(app.reload_file()))
    try:
        await app.run(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


@command("run", "run the agent (Modbus polling, cameras, rules, outbox, MQTT) until SIGTERM", _configure)
def run(args: argparse.Namespace) -> int:
    loaded = load_agent_config(args.config)
    logging_cfg = loaded.config.logging
    configure_logging(args.log_level or logging_cfg.level, args.log_format or logging_cfg.format)
    if (args.log_level or logging_cfg.level) != "debug":
        # The poller reports device failures itself (DOWN/UP events, one log line each).
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(_run(AgentApp(loaded)))
    return 0
