"""Plain helpers for the edge agent's tests (importable: this directory is on sys.path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAPS = ROOT / "firmware_configs" / "register_maps"


async def until(cond: Callable[[], object], timeout: float = 10.0, every: float = 0.01, what: str = ""):
    """Await ``cond()`` becoming truthy (polling, with a deadline); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await asyncio.sleep(every)


class StandInHub:
    """The hub's side of the protocol, for tests: decodes what agents publish (with the
    protocol codec) and acknowledges events and snapshots per protocol.

    ``publish(topic, payload, retain)`` is how it talks back (a MemoryBroker's publish
    or a paho client's). ``auto_ack`` False holds acks until ``ack_all()``.
    """

    def __init__(self, publish, *, auto_ack: bool = True):
        self.publish = publish
        self.auto_ack = auto_ack
        self.events = []  # every Event received, duplicates included
        self.snapshots = []  # (header, jpeg)
        self.status = []  # Status messages
        self.telemetry = []
        self.bad = []
        self.messages = 0
        self._unacked: dict[str, set[int]] = {}

    def on_message(self, topic: str, payload: bytes) -> None:
        from protocol.codec import decode_message
        from protocol.errors import ProtocolError
        from protocol.topics import Channel

        try:
            decoded = decode_message(topic, payload)
        except ProtocolError as exc:
            self.bad.append((topic, exc))
            return
        channel, agent = decoded.topic.channel, decoded.topic.agent_id
        if channel == Channel.EVENTS:
            self.messages += 1
            self.events.extend(decoded.message)
            self._unacked.setdefault(agent, set()).update(e.seq for e in decoded.message)
        elif channel == Channel.SNAPSHOTS:
            self.snapshots.append(decoded.message)
            self._unacked.setdefault(agent, set()).add(decoded.message[0].seq)
        elif channel == Channel.STATUS:
            self.status.append(decoded.message)
            return
        elif channel == Channel.TELEMETRY:
            self.telemetry.append(decoded.message)
            return
        else:
            return
        if self.auto_ack:
            self.ack_all()

    def ack_all(self) -> None:
        from datetime import UTC, datetime

        from protocol.codec import encode
        from protocol.messages import Ack
        from protocol.topics import Channel, agent_topic

        for agent, seqs in list(self._unacked.items()):
            if not seqs:
                continue
            ranges = _ranges(sorted(seqs))
            seqs.clear()
            ack = Ack(agent_id=agent, ranges=ranges[:2000], at=datetime.now(UTC))
            self.publish(agent_topic(agent, Channel.ACKS), encode(ack), False)

    def keys(self):
        return [(e.event_id, e.seq) for e in self.events]

    def unique(self):
        return set(self.keys())


def _ranges(seqs):
    out = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


class PahoHub:
    """A stand-in hub over a real broker: a paho client logged in as the hub user that
    subscribes to every agent's channels and acks per protocol (see StandInHub)."""

    def __init__(self, broker, *, auto_ack: bool = True, client_id: str = "standin-hub"):
        import threading

        import paho.mqtt.client as mqtt

        from protocol.topics import Channel, subscription

        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(broker.settings.hub_user, broker.settings.hub_password)
        self.hub = StandInHub(self._publish, auto_ack=auto_ack)
        self.ready = threading.Event()
        topics = [(subscription(c), 1) for c in (Channel.EVENTS, Channel.SNAPSHOTS, Channel.STATUS,
                                                 Channel.TELEMETRY)]

        def on_connect(c, u, flags, rc, props):
            c.subscribe(topics)

        def on_subscribe(c, u, mid, rcs, props):
            self.ready.set()

        def on_message(c, u, msg):
            with self.lock:
                self.hub.on_message(msg.topic, bytes(msg.payload))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(10), "stand-in hub could not subscribe"

    def _publish(self, topic, payload, retain):
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        assert info.rc == 0, info.rc

    def publish(self, topic, payload, retain=False):
        self._publish(topic, payload, retain)

    def ack_all(self):
        with self.lock:
            self.hub.ack_all()

    def __getattr__(self, name):
        return getattr(self.hub, name)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class AgentProcess:
    """``cityops-agent run --config FILE`` as a child process (``python -m edge_agent``)."""

    def __init__(self, config: Path, log_path: Path):
        self.config = config
        self.log_path = log_path
        self.proc = None

    def start(self) -> AgentProcess:
        import subprocess
        import sys

        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "edge_agent", "run", "--config", str(self.config)],
            stdout=log, stderr=log, cwd=str(ROOT))
        log.close()
        return self

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ensure_stopped(self) -> None:
        if self.running():
            self.kill9()


def model_package(folder: Path, *, model: bytes | None = None, labels: bytes | None = None) -> bytes:
    """A model release package (zip) of a model folder; ``model``/``labels`` replace its files."""
    import io
    import zipfile

    from protocol.releases import MODEL_FILE

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MODEL_FILE, model if model is not None else (folder / MODEL_FILE).read_bytes())
        z.writestr("labels.txt", labels if labels is not None else (folder / "labels.txt").read_bytes())
        if (folder / "thresholds.json").is_file():
            z.writestr("thresholds.json", (folder / "thresholds.json").read_bytes())
    return buf.getvalue()


class ReleaseServer:
    """The hub's side of model releases, for tests: offers packages, answers each chunk
    request with the chunks asked for (``drop(agent, index)`` -> True loses that answer
    once; ``serve_upto`` stops answering past a chunk index), records every report and
    request. ``publish(topic, payload, retain)`` talks back, as for StandInHub."""

    def __init__(self, publish, chunk_bytes: int = 64 * 1024):
        self.publish = publish
        self.chunk_bytes = chunk_bytes
        self.packages: dict[str, tuple[object, bytes]] = {}
        self.requests: list = []
        self.reports: list = []
        self.drop = lambda agent, index: False
        self.serve_upto: int | None = None

    def offer(self, release_id: str, package: bytes, version: int = 1, kind: str = "model"):
        from protocol.releases import ReleaseRef, sha256_hex

        ref = ReleaseRef(release_id=release_id, kind=kind, name="detector" if kind == "model" else "cityops-agent",
                         version=version, sha256=sha256_hex(package),
                         bytes=len(package), chunk_bytes=self.chunk_bytes,
                         chunks=-(-len(package) // self.chunk_bytes))
        self.packages[release_id] = (ref, package)
        return ref

    def desire(self, agent_id: str, release_id: str | None, rollout_id: str | None = None) -> None:
        from datetime import UTC, datetime

        from protocol.codec import encode
        from protocol.releases import DesiredRelease
        from protocol.topics import Channel, agent_topic

        ref = self.packages[release_id][0] if release_id else None
        msg = DesiredRelease(agent_id=agent_id, release=ref, rollout_id=rollout_id, issued_at=datetime.now(UTC))
        self.publish(agent_topic(agent_id, Channel.RELEASE), encode(msg), True)

    def on_message(self, topic: str, payload: bytes) -> None:
        from protocol.codec import decode_message
        from protocol.releases import release_chunk
        from protocol.topics import Channel, agent_topic

        decoded = decode_message(topic, payload)
        agent = decoded.topic.agent_id
        if decoded.topic.channel == Channel.RELEASE_STATE:
            self.reports.append(decoded.message)
        elif decoded.topic.channel == Channel.FETCH:
            req = decoded.message
            self.requests.append(req)
            ref, package = self.packages[req.release_id]
            for i in range(req.first, min(req.first + req.count, ref.chunks)):
                if self.serve_upto is not None and i > self.serve_upto:
                    return
                if not self.drop(agent, i):
                    self.publish(agent_topic(agent, Channel.BLOBS), release_chunk(package, ref, i), False)

    def states(self, agent_id: str | None = None) -> list[str]:
        return [str(r.state) for r in self.reports if agent_id in (None, r.agent_id)]


class PahoReleaseServer(ReleaseServer):
    """A ReleaseServer over a real broker, logged in as the hub user."""

    def __init__(self, broker, chunk_bytes: int = 64 * 1024, client_id: str = "standin-releases"):
        import threading

        import paho.mqtt.client as mqtt

        from protocol.topics import Channel, subscription

        super().__init__(self._publish, chunk_bytes)
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(broker.settings.hub_user, broker.settings.hub_password)
        ready = threading.Event()
        topics = [(subscription(Channel.FETCH), 1), (subscription(Channel.RELEASE_STATE), 1)]
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topics)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: ready.set()

        def on_message(c, u, msg):
            with self.lock:
                self.on_message(msg.topic, bytes(msg.payload))

        self.client.on_message = on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(10), "stand-in release server could not subscribe"

    def _publish(self, topic, payload, retain):
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        assert info.rc == 0, info.rc

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def agent_wheel(version: str, *, files: dict[str, bytes] | None = None, name: str = "cityops") -> bytes:
    """A wheel of this tree's agent (the ``edge_agent`` and ``protocol`` packages, sources
    and data files) whose ``edge_agent.__version__`` and METADATA say ``version``;
    ``files`` replace or add entries (e.g. a broken ``edge_agent/__main__.py``)."""
    import io
    import re
    import zipfile

    entries: dict[str, bytes] = {}
    for package in ("edge_agent", "protocol"):
        for path in sorted((ROOT / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                entries[path.relative_to(ROOT).as_posix()] = path.read_bytes()
    init = entries["edge_agent/__init__.py"].decode()
    entries["edge_agent/__init__.py"] = re.sub(r'__version__ = ".*"', f'__version__ = "{version}"', init).encode()
    dist = f"{name}-{version}.dist-info"
    entries[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    entries[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries.update(files or {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for entry, data in entries.items():
            z.writestr(entry, data)
    return buf.getvalue()


def pip_wheel(workdir: Path, version: str) -> bytes:
    """The wheel pip builds (offline, the venv's setuptools) from a copy of this tree's
    ``edge_agent`` and ``protocol`` packages, its version set to ``version`` in
    pyproject.toml and ``edge_agent.__version__``: the artifact an operator ships."""
    import re
    import shutil
    import subprocess
    import sys

    src = workdir / "src"
    src.mkdir(parents=True)
    for package in ("edge_agent", "protocol"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "README.md", src / "README.md")
    pyproject = (ROOT / "pyproject.toml").read_text()
    (src / "pyproject.toml").write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject, count=1))
    init = src / "edge_agent" / "__init__.py"
    init.write_text(re.sub(r'__version__ = ".*"', f'__version__ = "{version}"', init.read_text()))
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",  # noqa: S603
                    "-q", "-w", str(workdir / "dist")], cwd=src, check=True, capture_output=True, timeout=120)
    (wheel,) = (workdir / "dist").glob("cityops-*.whl")
    return wheel.read_bytes()


def write_gray_clip(path: Path, frames: int = 10) -> Path:
    """A small MJPEG video of brightening grey frames: a camera with nothing to detect."""
    import cv2
    import numpy as np

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 90))
    for i in range(frames):
        out.write(np.full((90, 160, 3), 60 + 10 * i, np.uint8))
    out.release()
    return path


def provisioned_agent(tmp_path: Path, broker, agent_id: str, extra_yaml: str = "") -> AgentProcess:
    """An agent config with its own broker account (credentials file, 0600) on ``broker``,
    data in ``tmp_path/data``, fast reconnects and a heartbeat a second; ``extra_yaml`` is
    appended (e.g. a ``cameras:`` section). Returns the process, not started."""
    import secrets

    password = secrets.token_urlsafe(18)
    broker.auth.set_user(agent_id, password)
    broker.reload()
    (tmp_path / "credentials.yaml").write_text(f"username: {agent_id}\npassword: {password}\n")
    (tmp_path / "credentials.yaml").chmod(0o600)
    (tmp_path / "agent.yaml").write_text(f"""\
agent: {{id: {agent_id}, location: {{lat: 31.2, lon: 121.4}}, data_dir: data}}
mqtt:
  host: {broker.host}
  port: {broker.port}
  credentials_file: credentials.yaml
  reconnect: {{initial_s: 0.1, max_s: 0.5}}
telemetry: {{interval_s: 1}}
logging: {{level: info}}
""" + extra_yaml)
    return AgentProcess(tmp_path / "agent.yaml", tmp_path / "agent.log")
