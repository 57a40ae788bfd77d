"""``cityops-agent provision --hub URL --token TOKEN --out DIR [--ca-file CA.pem]``: enroll
this agent over https (plain http only with ``--insecure-http``, with a warning)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from edge_agent.cli import command
from edge_agent.errors import ProvisioningError
from edge_agent.provision import INSECURE_HTTP_FLAG, check_hub_url, enroll, provision


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hub", required=True, help="the hub's base URL, e.g. https://hub.example:8443")
    p.add_argument("--ca-file", type=Path, metavar="PATH",
                   help="trust this CA (PEM) for the hub's certificate instead of the system's, "
                        "e.g. the hub's private CA")
    p.add_argument(INSECURE_HTTP_FLAG, action="store_true",
                   help="allow a plain http:// hub: the token and the password travel in clear")
    p.add_argument("--token", required=True, help="the enrollment token from `cityops-hub enroll`")
    p.add_argument("--out", required=True, type=Path, help="directory for credentials and config")
    p.add_argument("--force", action="store_true", help="replace credentials already in --out")
    p.add_argument("--lat", type=float, help="the agent's latitude (for the starter config)")
    p.add_argument("--lon", type=float, help="the agent's longitude")
    p.add_argument("--place", help="where it stands, in words")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the hub")


@command("provision", "enroll with the hub: token -> broker credentials + starter config", _configure)
def provision_command(args: argparse.Namespace) -> int:
    warning = check_hub_url(args.hub, insecure_http=args.insecure_http)
    if args.out.joinpath("credentials.yaml").exists() and not args.force:
        # Check before spending the single-use token on a refusal we can predict.
        raise ProvisioningError(f"{args.out / 'credentials.yaml'} already exists; pass --force "
                                "to replace the credentials")
    if warning:
        print(f"cityops-agent: warning: {warning}", file=sys.stderr)
    resp = asyncio.run(enroll(args.hub, args.token, timeout_s=args.timeout, ca_file=args.ca_file,
                              insecure_http=args.insecure_http))
    result = provision(resp, args.out, force=args.force, lat=args.lat, lon=args.lon, place=args.place)
    print(f"wrote {result.credentials} (mode 0600)" + (f", {result.ca}" if result.ca else "")
          + (f", {result.config}" if result.wrote_config else ""))
    print(result.next_step())
    return 0
