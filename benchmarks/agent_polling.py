"""Agent polling 256 simulated Modbus devices at 1 Hz: lateness, CPU, RSS.

Four simulated gateways (separate processes, 64 water meters each, ``python -m
simulators.modbus``) and a real Mosquitto; the agent (``edge_agent.app.AgentApp``:
polling, decoding, range checks, no-use and continuous-flow rules on every meter,
outbox, MQTT session, telemetry) runs in this process, so CPU and RSS are the agent's.

Baseline, same run: bare pymodbus clients reading the same registers of the same
devices at the same rate (no decoding, rules, outbox or MQTT). The ratio says what the
agent adds on top of the Modbus traffic itself.

    ./dev bench agent_polling [--devices 256] [--seconds 30] [--json out.json]

Target (DESIGN §6): one core (CPU < 100 %) and RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.app import AgentApp  # noqa: E402
from edge_agent.config import load_agent_config  # noqa: E402
from edge_agent.modbus import ModbusComponent  # noqa: E402
from edge_agent.sysinfo import rss_mb  # noqa: E402
from hub.broker import BrokerSettings, MosquittoBroker  # noqa: E402

MAPS = ROOT / "firmware_configs" / "register_maps"
PER_GATEWAY = 64


def start_gateways(n_devices: int) -> tuple[list[subprocess.Popen], list[int]]:
    procs, ports = [], []
    for first in range(1, n_devices + 1, PER_GATEWAY):
        last = min(first + PER_GATEWAY - 1, n_devices)
        units = f"{1}-{last - first + 1}"
        procs.append(subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "simulators.modbus", "--port", "0", "--device",
             f"water_meter:{units}", "--flow", "0.0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    for p in procs:
        line = p.stdout.readline()  # "serving N simulated device(s) on HOST:PORT"
        if "serving" not in line:
            raise SystemExit(f"simulator did not start: {line!r}")
        ports.append(int(line.rsplit(":", 1)[1]))
    return procs, ports


def write_config(dir_: Path, ports: list[int], n_devices: int, broker: MosquittoBroker) -> Path:
    devices = []
    for i in range(n_devices):
        port = ports[i // PER_GATEWAY]
        unit = i % PER_GATEWAY + 1
        devices.append(f"""\
  - id: wm-{i:04d}
    model: water_meter
    unit_id: {unit}
    tcp: {{host: 127.0.0.1, port: {port}}}
    poll_period_s: 1
    timeout_s: 1
    rules:
      water_no_use: {{hours: 8, resident: "r{i}"}}
      continuous_flow: {{hours: 2}}""")
    (dir_ / "credentials.yaml").write_text("username: bench-agent\npassword: bench-password-123\n")
    (dir_ / "credentials.yaml").chmod(0o600)
    path = dir_ / "agent.yaml"
    path.write_text(f"""\
agent: {{id: bench-agent, grid_id: grid-1, location: {{lat: 31.2, lon: 121.4}}, data_dir: data}}
mqtt: {{host: {broker.host}, port: {broker.port}, credentials_file: credentials.yaml}}
telemetry: {{interval_s: 5}}
logging: {{level: warning}}
register_maps: {{water_meter: {MAPS}/water_meter.yaml}}
devices:
""" + "\n".join(devices) + "\n")
    return path


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


async def run_agent(config: Path, warmup: float, seconds: float) -> dict:
    loaded = load_agent_config(config)
    app = AgentApp(loaded)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    await asyncio.sleep(warmup)
    (component,) = [c for c in app.components if isinstance(c, ModbusComponent)]
    component.lateness.clear()
    polls0, failed0 = component.polls, component.failed_polls
    cpu0, t0 = cpu_seconds(), time.monotonic()
    rss_peak = 0.0
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(1)
        rss_peak = max(rss_peak, rss_mb() or 0.0)
    wall = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    late = sorted(component.lateness)
    result = {
        "polls_per_s": round((component.polls - polls0) / wall, 1),
        "failed_polls": component.failed_polls - failed0,
        "cpu_percent": round(100 * cpu / wall, 1),
        "rss_mb": rss_peak,
        "lateness_p50_ms": round(1000 * statistics.median(late), 2) if late else None,
        "lateness_p99_ms": round(1000 * late[int(0.99 * (len(late) - 1))], 2) if late else None,
        "lateness_max_ms": round(1000 * late[-1], 2) if late else None,
        "devices_up": sum(1 for s in component.telemetry()["devices"].values() if s == "up"),
    }
    stop.set()
    await task
    return result


async def run_baseline(ports: list[int], n_devices: int, warmup: float, seconds: float) -> dict:
    """Bare pymodbus: one client per gateway, each device read once a second."""
    from pymodbus.client import AsyncModbusTcpClient

    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=1, retries=0, reconnect_delay=0) for p in ports]
    for c in clients:
        await c.connect()
    stop = asyncio.Event()
    counts = {"polls": 0}
    late: list[float] = []
    measuring = {"on": False}

    async def device(i: int) -> None:
        client = clients[i // PER_GATEWAY]
        loop = asyncio.get_running_loop()
        due = loop.time() + (i % 1000) / 1000
        while not stop.is_set():
            await asyncio.sleep(max(0.0, due - loop.time()))
            if measuring["on"]:
                late.append(loop.time() - due)
            await client.read_input_registers(0, count=5, device_id=i % PER_GATEWAY + 1)
            counts["polls"] += 1
            due += 1.0

    tasks = [asyncio.create_task(device(i)) for i in range(n_devices)]
    await asyncio.sleep(warmup)
    measuring["on"] = True
    polls0, cpu0, t0 = counts["polls"], cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in clients:
        c.close()
    late.sort()
    return {
        "polls_per_s": round((counts["polls"] - polls0) / wall, 1),
        "cpu_percent": round(100 * cpu / wall, 1),
        "lateness_p50_ms": round(1000 * statistics.median(late), 2) if late else None,
        "lateness_p99_ms": round(1000 * late[int(0.99 * (len(late) - 1))], 2) if late else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    procs, ports = start_gateways(args.devices)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            broker = MosquittoBroker(BrokerSettings(data_dir=Path(tmp) / "broker"))
            broker.start()
            broker.auth.set_user("bench-agent", "bench-password-123")
            broker.reload()
            try:
                baseline = asyncio.run(run_baseline(ports, args.devices, args.warmup, args.seconds))
                config = write_config(Path(tmp), ports, args.devices, broker)
                agent = asyncio.run(run_agent(config, args.warmup, args.seconds))
            finally:
                broker.stop()
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    ratio = round(agent["cpu_percent"] / baseline["cpu_percent"], 2) if baseline["cpu_percent"] else None
    result = {"devices": args.devices, "rate_hz": 1, "seconds": args.seconds, "agent": agent,
              "baseline_bare_pymodbus": baseline, "cpu_ratio_agent_to_bare": ratio,
              "targets": {"cpu_percent_max": 100, "rss_mb_max": 200},
              "pass": agent["cpu_percent"] < 100 and agent["rss_mb"] < 200
              and agent["devices_up"] == args.devices}
    print(f"agent polling: {args.devices} devices at 1 Hz for {args.seconds:g} s (4 simulated gateways)")
    print(f"{'':24}{'agent':>12}{'bare pymodbus':>16}")
    for key, label in [("polls_per_s", "polls/s"), ("cpu_percent", "CPU % of one core"),
                       ("lateness_p50_ms", "lateness p50 ms"), ("lateness_p99_ms", "lateness p99 ms")]:
        print(f"{label:24}{agent[key]!s:>12}{baseline[key]!s:>16}")
    print(f"{'lateness max ms':24}{agent['lateness_max_ms']!s:>12}")
    print(f"{'RSS MB (peak)':24}{agent['rss_mb']!s:>12}")
    print(f"{'devices up':24}{agent['devices_up']!s:>12}")
    print(f"CPU ratio agent / bare pymodbus: {ratio}; targets CPU < 100 %, RSS < 200 MB: "
          f"{'PASS' if result['pass'] else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
