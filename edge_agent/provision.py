"""Enrollment: exchange a single-use, expiring token for this agent's broker credentials.

``cityops-agent provision --hub URL --token TOKEN --out DIR`` posts
:class:`protocol.provisioning.EnrollRequest` to ``{hub}/api/v1/enroll``, and from the
:class:`~protocol.provisioning.EnrollResponse` writes, in ``DIR``:

* ``credentials.yaml`` (mode 0600): the broker user name and password;
* ``ca.pem`` when the hub's broker speaks TLS and sent its CA;
* ``agent.yaml``: a starter config that points at both (devices to be added).

The token and the password in the answer are secrets, so the request goes over https
only (:func:`check_hub_url`): the hub's certificate is checked against the system's CAs,
or against the hub's own CA given with ``--ca-file`` (a private CA such as the one
``hub/tls.py`` makes). Plain http needs ``--insecure-http`` and prints a warning. The
broker's CA then arrives in the answer, which the verified connection vouches for.

A wrong, used or expired token, an unreachable hub, an untrusted certificate and a
refusal to overwrite existing credentials each end in one clear
:class:`~edge_agent.errors.ProvisioningError`.
"""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import yaml
from pydantic import ValidationError

from edge_agent import __version__
from edge_agent.credentials import write_secret
from edge_agent.errors import ProvisioningError
from protocol.provisioning import ENROLL_PATH, EnrollRequest, EnrollResponse

__all__ = ["INSECURE_HTTP_FLAG", "ProvisionResult", "check_hub_url", "enroll", "provision",
           "starter_config"]

CREDENTIALS = "credentials.yaml"
CA = "ca.pem"
CONFIG = "agent.yaml"
INSECURE_HTTP_FLAG = "--insecure-http"


@dataclass(frozen=True)
class ProvisionResult:
    agent_id: str
    credentials: Path
    config: Path
    ca: Path | None
    wrote_config: bool = True

    def next_step(self) -> str:
        kept = "" if self.wrote_config else f" (kept your existing {self.config.name})"
        return (f"agent {self.agent_id} enrolled{kept}. Next: add its devices (and its location, "
                f"if not given) to {self.config}, then run:\n"
                f"  cityops-agent check-config {self.config}\n"
                f"  cityops-agent run --config {self.config}")


def _problem_text(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300] or "(no detail)"
    if isinstance(data, dict):
        for key in ("detail", "title", "error", "message", "reason"):
            if isinstance(data.get(key), str) and data[key]:
                return data[key][:300]
    return body.strip()[:300]


def check_hub_url(hub: str, *, insecure_http: bool = False) -> str | None:
    """Refuse a hub address the token may not travel to; a warning (to print) when it goes
    in clear because ``insecure_http`` allows it, else None."""
    try:
        parts = urlsplit(hub)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ProvisioningError(f"{hub!r} is not a hub URL; use e.g. https://hub.example:8443", hub=hub)
    if parts.scheme == "https":
        return None
    if not insecure_http:
        raise ProvisioningError(
            f"{hub} is plain http: the enrollment token and the broker password the hub answers "
            f"would cross the network in clear. Use the hub's https address (with --ca-file "
            f"CA.pem for a private CA), or pass {INSECURE_HTTP_FLAG} to send them in clear anyway "
            "(a closed test network only)", hub=hub)
    return (f"provisioning over plain http ({INSECURE_HTTP_FLAG}): the enrollment token and "
            "the broker password cross the network in clear, and nothing proves the answer "
            "came from your hub; use https for real agents")


def _tls_context(hub: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """The hub's certificate is checked against ``ca_file`` only, when given; else None
    (aiohttp's default: the system's CAs)."""
    if ca_file is None:
        return None
    if urlsplit(hub).scheme != "https":
        raise ProvisioningError("--ca-file is for an https hub; give its https:// address", hub=hub)
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ProvisioningError(f"cannot use --ca-file {ca_file}: {getattr(exc, 'strerror', None) or exc}"
                                "; give the hub's CA certificate in PEM", hub=hub) from None


async def enroll(hub: str, token: str, *, timeout_s: float = 15.0, hostname: str | None = None,
                 ca_file: Path | None = None, insecure_http: bool = False) -> EnrollResponse:
    """POST the token to the hub over https (``ca_file``: trust that CA for it; plain http
    only with ``insecure_http``) and return what it answers."""
    check_hub_url(hub, insecure_http=insecure_http)
    tls = _tls_context(hub, ca_file)
    url = hub.rstrip("/") + ENROLL_PATH
    try:
        request = EnrollRequest(token=token, hostname=hostname or socket.gethostname()[:200],
                                agent_version=__version__)
    except ValidationError:
        raise ProvisioningError("the token is malformed (expected 16-200 characters); copy it "
                                "again from `cityops-hub enroll`", hub=hub) from None
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
            http.post(url, data=request.model_dump_json(), ssl=tls if tls is not None else True,
                      headers={"Content-Type": "application/json"}) as resp,
        ):
            body = await resp.text()
            status = resp.status
    except aiohttp.InvalidURL:
        raise ProvisioningError(f"{hub!r} is not a URL; use e.g. https://hub.example:8443", hub=hub) from None
    except aiohttp.ClientConnectorCertificateError as exc:
        trusted = f"the CA in {ca_file}" if ca_file else "this machine's CAs"
        raise ProvisioningError(
            f"the hub's certificate at {url} is not trusted by {trusted} ({exc.certificate_error}); "
            "pass --ca-file with the hub's CA certificate (a hub that makes its own: ca.crt in its "
            "broker.managed_tls.dir), and check the address is a name the certificate is for",
            hub=hub) from None
    except aiohttp.ClientSSLError as exc:
        raise ProvisioningError(f"TLS with the hub at {url} failed ({exc}); is the hub serving "
                                "https on that port (web.tls)?", hub=hub) from None
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise ProvisioningError(f"the hub is unreachable at {url} ({exc or 'timed out'}); check "
                                "the address and that the hub is running", hub=hub) from None
    except aiohttp.ClientError as exc:
        raise ProvisioningError(f"request to {url} failed: {exc}", hub=hub) from None
    detail = _problem_text(body)
    if status in (401, 403):
        raise ProvisioningError(
            f"the hub refused the token ({status}: {detail}). A token works once and expires; "
            "ask for a new one (cityops-hub enroll --agent-id ...)", hub=hub)
    if status == 404:
        raise ProvisioningError(f"no enrollment endpoint at {url} (404): is this the cityops hub?", hub=hub)
    if status >= 400:
        raise ProvisioningError(f"the hub answered {status}: {detail}", hub=hub)
    try:
        return EnrollResponse.model_validate_json(body)
    except ValidationError as exc:
        raise ProvisioningError(f"the hub's answer is not a valid enrollment response: {exc}", hub=hub) from None


def starter_config(resp: EnrollResponse, *, lat: float | None = None, lon: float | None = None,
                   place: str | None = None) -> str:
    """A first agent config for the enrolled agent (YAML text)."""
    agent: dict = {"id": resp.agent_id}
    if resp.grid_id:
        agent["grid_id"] = resp.grid_id
    if lat is not None and lon is not None:
        agent["location"] = {"lat": lat, "lon": lon, **({"place": place} if place else {})}
    agent["data_dir"] = "data"
    mqtt: dict = {"host": resp.mqtt.host, "port": resp.mqtt.port, "credentials_file": CREDENTIALS}
    if resp.mqtt.tls:
        mqtt["tls"] = {"ca_file": CA} if resp.mqtt.ca_pem else {}
    doc = {"agent": agent, "mqtt": mqtt, "register_maps": {}, "devices": []}
    head = (f"# Starter config for agent {resp.agent_id}, written by cityops-agent provision.\n"
            "# Add register_maps and devices (see firmware_configs/agents/ for examples).\n")
    if "location" not in agent:
        head += ("# Set agent.location (lat, lon, place): check-config refuses this file until\n"
                 "# it is there, because every event carries it.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def provision(resp: EnrollResponse, out: Path, *, force: bool = False, lat: float | None = None,
              lon: float | None = None, place: str | None = None) -> ProvisionResult:
    """Write credentials, CA and a starter config into ``out``."""
    out = Path(out)
    creds_path, config_path, ca_path = out / CREDENTIALS, out / CONFIG, out / CA
    if creds_path.exists() and not force:
        raise ProvisioningError(f"{creds_path} already exists; pass --force to replace the "
                                "credentials (the old ones stop working on the hub)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_secret(creds_path, yaml.safe_dump({"username": resp.username, "password": resp.password}))
        ca: Path | None = None
        if resp.mqtt.tls and resp.mqtt.ca_pem:
            write_secret(ca_path, resp.mqtt.ca_pem)
            ca = ca_path
        wrote_config = not config_path.exists()  # never overwrite an installer's config
        if wrote_config:
            config_path.write_text(starter_config(resp, lat=lat, lon=lon, place=place), encoding="utf-8")
    except OSError as exc:
        raise ProvisioningError(f"cannot write to {out}: {exc.strerror or exc}") from exc
    return ProvisionResult(resp.agent_id, creds_path, config_path, ca, wrote_config)
