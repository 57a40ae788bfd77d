"""The agent config of a scenario site: what ``cityops-agent run`` would read to watch
that site's gateway, generated from the scenario (pure: plain data in, plain data out).

Rules keep the scenario's simulated units (hours, minutes): the agent measures them on
the clock it is given, which in a run is the scenario's simulated clock. Machine timings
(poll period, timeouts, heartbeat) are real seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .devices import DEFAULT_MAPS, unit_of
from .model import CameraSpec, Scenario, Site
from .truth import CAMERA_END_AFTER_S, site_timing

__all__ = ["AgentWiring", "agent_config_data"]


@dataclass(frozen=True)
class AgentWiring:
    """Where a generated agent finds its broker, its gateway and its files."""

    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 502
    credentials_file: str | None = None
    data_dir: str = "data"
    maps_dir: Path = DEFAULT_MAPS
    telemetry_s: float = 5.0
    camera_base_url: str | None = None  # the camera simulator, e.g. http://127.0.0.1:8090/


def agent_config_data(site: Site, scenario: Scenario, scale: float, wiring: AgentWiring) -> dict[str, Any]:
    timing = site_timing(site, scenario, scale)
    location = site.location.model_dump(exclude_none=True)
    mqtt: dict[str, Any] = {
        "host": wiring.broker_host, "port": wiring.broker_port, "protocol": "5",
        "reconnect": {"initial_s": 0.5, "max_s": 5},
    }
    if wiring.credentials_file:
        mqtt["credentials_file"] = wiring.credentials_file
    devices = []
    for i, spec in enumerate(site.devices):
        device: dict[str, Any] = {
            "id": spec.id, "model": spec.model, "unit_id": unit_of(spec, i),
            "tcp": {"host": wiring.gateway_host, "port": wiring.gateway_port},
            "poll_period_s": round(timing.poll_real, 4),
            "timeout_s": site.modbus.timeout_s, "retries": site.modbus.retries,
            "down_after": site.modbus.down_after, "backoff_max_s": site.modbus.backoff_max_s,
        }
        if spec.location is not None:
            device["location"] = spec.location.model_dump(exclude_none=True)
        rules = spec.rules.model_dump(by_alias=True, exclude_unset=True)
        if rules:
            device["rules"] = rules
        devices.append(device)
    data: dict[str, Any] = {
        "agent": {"id": site.id, "grid_id": site.grid, "location": location, "data_dir": wiring.data_dir},
        "mqtt": mqtt,
        # A sent event unacknowledged for 30 real seconds is sent again (the outbox measures
        # on the simulated clock, hence the scale; the model caps it at an hour).
        "outbox": {"ack_timeout_s": min(3600.0, 30.0 * scale), "synchronous": "normal"},
        "telemetry": {"interval_s": wiring.telemetry_s},
        "logging": {"level": "warning"},
        "register_maps": {m: str(wiring.maps_dir / f"{m}.yaml") for m in sorted({d.model for d in site.devices})},
        "devices": devices,
    }
    if site.cameras and wiring.camera_base_url:
        data["cameras"] = [camera_config_data(cam, site, wiring.camera_base_url) for cam in site.cameras]
    return data


def camera_config_data(cam: CameraSpec, site: Site, base_url: str) -> dict[str, Any]:
    """A camera of the agent config reading the camera simulator's stream (real seconds)."""
    where = (cam.location or site.location).model_dump(exclude_none=True)
    location = {"lat": where["lat"], "lon": where["lon"], "grid_id": site.grid}
    if where.get("place"):
        location["place"] = where["place"]
    return {"id": cam.id, "url": f"{base_url.rstrip('/')}/cameras/{cam.id}.mjpg", "fps": cam.fps,
            "location": location, "tracking": {"end_after_s": CAMERA_END_AFTER_S},
            "stall_timeout_s": 10.0, "down_after_s": 20.0, "reconnect_initial_s": 0.5, "reconnect_max_s": 5.0}
