"""``cityops-agent run --config FILE``: run the agent until SIGTERM/SIGINT.

A release of the agent's own software (edge_agent/selfupdate.py) stops the agent the
same clean way and starts it again on the new version (the same process id).

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
from edge_agent.selfupdate import restart
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
    app = AgentApp(loaded)
    asyncio.run(_run(app))
    if app.restart_requested:
        argv = getattr(args, "argv", None)
        if argv is None:
            log.error("an agent release asks for a restart, which only a cityops-agent run process "
                      "can do; start the agent again")
            return 75
        restart(loaded.data_dir / "releases", argv)
        return 75  # could not start again: the service manager (Restart=on-failure) does
    return 0
