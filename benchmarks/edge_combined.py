"""One edge agent on one core: 16 camera streams at 2 fps *and* 256 Modbus devices at 1 Hz.

DESIGN §6 asks for both at once on one core with RSS < 200 MB. The agent is the real
``edge_agent.app.AgentApp`` (cameras, detector, tracker, Modbus polling, rules, outbox,
MQTT session to a private Mosquitto) in a child process pinned to core 0; the camera
simulator (live MJPEG over HTTP, 720p at 5 fps) and four Modbus gateway processes run
beside it (core 1 where the machine has one).

Same-run baselines: the same agent with only the Modbus devices and with only the cameras,
so the table shows what each half costs and whether together they cost more than the sum.

    ./dev bench edge_combined [--streams 16] [--devices 256] [--seconds 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.agent_polling import start_gateways, write_config  # noqa: E402
from edge_agent.sysinfo import rss_mb  # noqa: E402
from hub.broker import BrokerSettings, MosquittoBroker  # noqa: E402

HERE = Path(__file__).resolve()


def _pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _camera_lines(streams: int, port: int, model: str | None = None, clips: bool = True) -> str:
    extra = "" if clips else ", clip: {enabled: false}"
    cams = "\n".join(f"  - {{id: cam{k:02d}, url: 'http://127.0.0.1:{port}/cameras/cam{k}.mjpg', fps: 2{extra}}}"
                     for k in range(streams))
    chosen = f", model: '{model}'" if model else ""
    return f"cameras:\n{cams}\ndetector: {{threads: 1{chosen}}}\n"


def run_agent_child(config: Path, warmup: float, seconds: float) -> None:
    """(child) Run the agent pinned to core 0 and print one JSON line of figures."""
    _pin(0)
    import cv2

    cv2.setNumThreads(1)
    from edge_agent.app import AgentApp
    from edge_agent.config import load_agent_config

    async def main() -> dict:
        app = AgentApp(load_agent_config(config))
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        await asyncio.sleep(warmup)
        comps = {type(c).__name__: c for c in app.components}
        modbus, camera = comps.get("ModbusComponent"), comps.get("CameraComponent")
        polls0 = modbus.polls if modbus else 0
        frames0 = {w.camera.id: w.frames for w in camera.workers} if camera else {}
        t = os.times()
        cpu0, t0 = t.user + t.system, time.monotonic()
        peak = 0.0
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(1)
            peak = max(peak, rss_mb() or 0.0)
        wall = time.monotonic() - t0
        t = os.times()
        out = {"cpu_percent": round(100 * (t.user + t.system - cpu0) / wall, 1), "rss_peak_mb": peak}
        if modbus:
            out["polls_per_s"] = round((modbus.polls - polls0) / wall, 1)
            out["devices_up"] = sum(1 for s in modbus.telemetry()["devices"].values() if s == "up")
        if camera:
            rates = [(w.frames - frames0[w.camera.id]) / wall for w in camera.workers]
            out["fps_per_stream_min"] = round(min(rates), 2)
            out["fps_per_stream_mean"] = round(sum(rates) / len(rates), 2)
            out["cameras_up"] = sum(1 for c in camera.telemetry()["cameras"].values() if c["state"] == "up")
        stop.set()
        await task
        return out

    print(json.dumps(asyncio.run(main())), flush=True)


def _run_phase(config: Path, warmup: float, seconds: float) -> dict:
    env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
    done = subprocess.run([sys.executable, str(HERE), "--role", "agent", "--config", str(config),  # noqa: S603
                           "--warmup", str(warmup), "--seconds", str(seconds)],
                          capture_output=True, text=True, timeout=warmup + seconds + 120, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"the agent failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--devices", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--model", default=None, help="the cameras' detector.model (default: the bundled default; "
                    "e.g. bundled:real)")
    ap.add_argument("--no-clips", action="store_true", help="cameras without event clips (clip.enabled false): "
                    "the clips' ring buffer cost is the difference")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--role", choices=["agent"], help=argparse.SUPPRESS)
    ap.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role == "agent":
        run_agent_child(args.config, args.warmup, args.seconds)
        return 0

    load0 = [round(v, 2) for v in os.getloadavg()]
    port = _free_port()
    cam_server = subprocess.Popen(  # noqa: S603 - our own benchmark script
        [sys.executable, str(ROOT / "benchmarks" / "edge_inference.py"), "--role", "serve", "--port", str(port),
         "--streams", str(args.streams), "--seconds", str(3 * (args.seconds + args.warmup) + 120)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    procs, ports = start_gateways(args.devices)
    results: dict = {"streams": args.streams, "devices": args.devices, "seconds": args.seconds,
                     "model": args.model or "bundled:rendered", "clips": not args.no_clips}
    try:
        if "READY" not in (cam_server.stdout.readline() or ""):
            raise SystemExit("the camera simulator did not start")
        with tempfile.TemporaryDirectory() as tmp:
            broker = MosquittoBroker(BrokerSettings(data_dir=Path(tmp) / "broker"))
            broker.start()
            broker.auth.set_user("bench-agent", "bench-password-123")
            broker.reload()
            try:
                for phase in ("modbus_only", "cameras_only", "both"):
                    d = Path(tmp) / phase
                    d.mkdir()
                    n_dev = 0 if phase == "cameras_only" else args.devices
                    config = write_config(d, ports, n_dev, broker)
                    if not n_dev:
                        config.write_text(config.read_text().replace("devices:\n", "devices: []\n"))
                    if phase != "modbus_only":
                        with config.open("a") as f:
                            f.write(_camera_lines(args.streams, port, args.model, not args.no_clips))
                    results[phase] = _run_phase(config, args.warmup, args.seconds)
            finally:
                broker.stop()
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        cam_server.terminate()
        cam_server.wait(10)
    both = results["both"]
    sum_parts = results["modbus_only"]["cpu_percent"] + results["cameras_only"]["cpu_percent"]
    results["cpu_both_over_sum_of_parts"] = round(both["cpu_percent"] / sum_parts, 2) if sum_parts else None
    results["pass"] = bool(both["cpu_percent"] < 100 and both["rss_peak_mb"] < 200
                           and both.get("fps_per_stream_min", 0) >= 1.9
                           and both.get("polls_per_s", 0) >= 0.95 * args.devices)
    results["load_avg"] = {"start": load0, "end": [round(v, 2) for v in os.getloadavg()]}

    print(f"{'':22}{'modbus only':>14}{'cameras only':>14}{'both':>14}")
    for key, label in [("cpu_percent", "CPU % of one core"), ("rss_peak_mb", "RSS peak MB"),
                       ("polls_per_s", "Modbus polls/s"), ("fps_per_stream_min", "fps/stream (min)"),
                       ("fps_per_stream_mean", "fps/stream (mean)"), ("devices_up", "devices up"),
                       ("cameras_up", "cameras up")]:
        row = [results[p].get(key, "-") for p in ("modbus_only", "cameras_only", "both")]
        print(f"{label:22}" + "".join(f"{v!s:>14}" for v in row))
    print(f"both / (modbus + cameras) CPU: {results['cpu_both_over_sum_of_parts']}; load average "
          f"{load0} → {results['load_avg']['end']}; target (CPU < 100 %, RSS < 200 MB, 2 fps, 1 Hz): "
          f"{'PASS' if results['pass'] else 'FAIL'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
