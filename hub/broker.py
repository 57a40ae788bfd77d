"""Run and manage Eclipse Mosquitto for cityops.

One module owns everything about the broker: the config file (listeners, persistence,
size and queue limits), the password file (Mosquitto's PBKDF2-SHA512 ``$7$`` format,
written here without a subprocess), the ACL file (generated from the topic grammar in
:mod:`protocol.topics`), and the child process (start, health check, reload, stop, kill).

The demo, the benchmarks and every test that needs a broker use :class:`MosquittoBroker`;
nothing relies on a broker somebody started by hand.

Production installs usually run Debian's mosquitto under systemd: ``cityops-hub broker
write-config`` writes the same files for it, and :class:`BrokerAuth` reloads it with a
configured command (an argument list, never a shell string).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import pwd
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protocol.errors import CityopsError
from protocol.ids import is_safe_id, new_secret
from protocol.limits import BROKER_MESSAGE_SIZE_LIMIT
from protocol.topics import acl_lines

log = logging.getLogger(__name__)

__all__ = [
    "BrokerAuth",
    "BrokerError",
    "BrokerSettings",
    "MosquittoBroker",
    "find_mosquitto",
    "free_port",
    "hash_password",
    "mqtt_probe",
    "verify_password",
]

PBKDF2_ITERATIONS = 101  # Mosquitto's own default for `$7$` hashes


class BrokerError(CityopsError):
    """The broker could not be configured, started or reached."""


def find_mosquitto() -> str:
    """Path of the mosquitto binary; a clear error naming the Debian package if missing."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(
        "mosquitto is not installed. Run ./dev setup (or: apt-get install mosquitto mosquitto-clients)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A Mosquitto 2.x password hash: ``$7$iterations$salt$pbkdf2-sha512``."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(digest).decode()}"
    )


def verify_password(password: str, hashed: str) -> bool:
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
    except ValueError:
        return False
    if kind != "7":
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(base64.b64encode(got).decode(), digest)


@dataclass
class BrokerSettings:
    """What the generated mosquitto.conf says. Defaults suit one district on one machine."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port when the broker starts
    hub_user: str = "hub"
    hub_password: str = field(default_factory=lambda: new_secret("mqp"))
    persistence: bool = True
    autosave_interval_s: int = 30
    message_size_limit: int = BROKER_MESSAGE_SIZE_LIMIT
    max_inflight_messages: int = 100  # per client, QoS 1 messages in flight to it
    max_queued_messages: int = 200_000  # per client, queued while it is slow or offline
    max_connections: int = -1
    tls_port: int | None = None  # a second listener with TLS when set (0: free port)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_cafile: Path | None = None
    run_as: str | None = None  # user mosquitto drops to when started as root
    extra_lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not is_safe_id(self.hub_user):
            raise BrokerError(f"hub user {self.hub_user!r} is not a valid id")

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def password_path(self) -> Path:
        return self.data_dir / "passwd"

    @property
    def acl_path(self) -> Path:
        return self.data_dir / "acl"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "mosquitto.log"

    @property
    def persistence_dir(self) -> Path:
        return self.data_dir / "persist"


class BrokerAuth:
    """The broker's password file: add and remove agents, keep the hub user.

    Writes are atomic (temp file + rename) and the file is mode 0600 (0640 with the
    broker's group when it runs as another user). ``reload`` tells the broker to re-read
    password and ACL files.
    """

    def __init__(self, settings: BrokerSettings, reload_command: Sequence[str] | None = None):
        self.settings = settings
        self.reload_command = list(reload_command) if reload_command else None
        self._broker: MosquittoBroker | None = None

    def attach(self, broker: MosquittoBroker) -> None:
        self._broker = broker

    def _read(self) -> dict[str, str]:
        entries: dict[str, str] = {}
        path = self.settings.password_path
        if not path.exists():
            return entries
        for raw in path.read_text().splitlines():
            if raw.strip() and not raw.startswith("#") and ":" in raw:
                user, hashed = raw.split(":", 1)
                entries[user] = hashed
        return entries

    def _write(self, entries: dict[str, str]) -> None:
        path = self.settings.password_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{u}:{h}\n" for u, h in sorted(entries.items())))
        os.chmod(tmp, 0o600)
        _chown_for_broker(tmp, self.settings.run_as)
        os.replace(tmp, path)

    def users(self) -> list[str]:
        return sorted(self._read())

    def set_user(self, username: str, password: str) -> None:
        if not is_safe_id(username):
            raise BrokerError(f"broker user {username!r} is not a valid id")
        entries = self._read()
        entries[username] = hash_password(password)
        self._write(entries)

    def set_users(self, credentials: dict[str, str]) -> None:
        """Add or replace many users in one write (fleets of thousands)."""
        entries = self._read()
        for username, password in credentials.items():
            if not is_safe_id(username):
                raise BrokerError(f"broker user {username!r} is not a valid id")
            entries[username] = hash_password(password)
        self._write(entries)

    def remove_user(self, username: str) -> bool:
        entries = self._read()
        if entries.pop(username, None) is None:
            return False
        self._write(entries)
        return True

    def check(self, username: str, password: str) -> bool:
        hashed = self._read().get(username)
        return hashed is not None and verify_password(password, hashed)

    def write_acl(self) -> None:
        path = self.settings.acl_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(acl_lines(self.settings.hub_user)) + "\n")
        os.chmod(tmp, 0o600)
        _chown_for_broker(tmp, self.settings.run_as)
        os.replace(tmp, path)

    def reload(self) -> None:
        """Make the broker re-read its password and ACL files."""
        if self._broker is not None and self._broker.running:
            self._broker.reload()
        elif self.reload_command:
            try:
                subprocess.run(self.reload_command, check=True, timeout=30)  # noqa: S603
            except (OSError, subprocess.SubprocessError) as exc:
                raise BrokerError(
                    f"broker reload command {self.reload_command} failed: {exc}"
                ) from exc


def _chown_for_broker(path: Path, run_as: str | None) -> None:
    if os.geteuid() != 0 or not run_as or run_as == "root":
        return
    try:
        entry = pwd.getpwnam(run_as)
    except KeyError:
        raise BrokerError(f"broker user {run_as!r} does not exist on this machine") from None
    os.chown(path, entry.pw_uid, entry.pw_gid)


def render_config(settings: BrokerSettings) -> str:
    """The mosquitto.conf text for ``settings`` (port must be resolved)."""
    s = settings
    run_as = s.run_as or pwd.getpwuid(os.geteuid()).pw_name
    lines = [
        "# generated by cityops (hub/broker.py); regenerate rather than edit",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {s.password_path}",
        f"acl_file {s.acl_path}",
        f"user {run_as}",
        f"message_size_limit {s.message_size_limit}",
        f"max_inflight_messages {s.max_inflight_messages}",
        f"max_queued_messages {s.max_queued_messages}",
        "max_queued_bytes 0",
        "set_tcp_nodelay true",
        f"log_dest file {s.log_path}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
    ]
    if s.persistence:
        lines += [
            "persistence true",
            f"persistence_location {s.persistence_dir}/",
            f"autosave_interval {s.autosave_interval_s}",
        ]
    else:
        lines.append("persistence false")
    lines += ["", f"listener {s.port} {s.host}", f"max_connections {s.max_connections}"]
    if s.tls_port is not None:
        if not (s.tls_certfile and s.tls_keyfile):
            raise BrokerError("a TLS listener needs tls_certfile and tls_keyfile")
        lines += [
            "",
            f"listener {s.tls_port} {s.host}",
            f"max_connections {s.max_connections}",
            f"certfile {s.tls_certfile}",
            f"keyfile {s.tls_keyfile}",
        ]
        if s.tls_cafile:
            lines.append(f"cafile {s.tls_cafile}")
        lines.append("tls_version tlsv1.2")
    lines += s.extra_lines
    return "\n".join(lines) + "\n"


class MosquittoBroker:
    """A Mosquitto child process with generated config, password and ACL files.

    ::

        with MosquittoBroker(BrokerSettings(data_dir=tmp)) as broker:
            broker.auth.set_user("agent-1", "secret...")
            broker.reload()
            ... connect to broker.host, broker.port as broker.settings.hub_user ...
    """

    def __init__(self, settings: BrokerSettings, *, binary: str | None = None):
        self.settings = settings
        self.binary = binary or find_mosquitto()
        self.auth = BrokerAuth(settings)
        self.auth.attach(self)
        self._proc: subprocess.Popen[bytes] | None = None
        self._auto_port = settings.port == 0  # picked here: may be re-picked if taken
        self._served = False  # has run on its port: a restart tries that port first
        self._auto_tls_port = settings.tls_port == 0
        self._log_offsets: tuple[int, int] = (0, 0)

    # -- files -------------------------------------------------------------------
    def write_files(self) -> Path:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if s.persistence:
            s.persistence_dir.mkdir(parents=True, exist_ok=True)
            _chown_for_broker(s.persistence_dir, s.run_as)
        if s.port == 0:
            s.port = free_port(s.host)
        if s.tls_port == 0:
            s.tls_port = free_port(s.host)
        self.auth.set_user(s.hub_user, s.hub_password)
        self.auth.write_acl()
        s.config_path.write_text(render_config(s))
        os.chmod(s.config_path, 0o644)
        return s.config_path

    # -- process -----------------------------------------------------------------
    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        """Start mosquitto and wait until it answers an MQTT CONNECT as the hub user.

        A port picked here (``port: 0``) was free a moment ago, but another process on the
        machine may bind it before mosquitto does; mosquitto then exits at once with
        "Address already in use" while a plain TCP probe still succeeds (against the other
        listener). So readiness is an MQTT handshake with our own credentials, and a lost
        race picks a fresh port and starts again.
        """
        if self.running:
            return self
        if self.settings.port == 0:
            self._auto_port = True
        if not self.settings.config_path.exists() or self.settings.port == 0:
            self.write_files()
        hops = 0
        # A restart keeps its address: clients know it. Its port can be held for a moment
        # after the last run (a client socket that was given it as its own local port
        # while nothing listened, a closing connection), so try it again for a while
        # before a port picked here moves to a fresh one.
        same_port_until = time.monotonic() + timeout if self._served else 0.0
        while True:
            self._spawn()
            try:
                self.wait_ready(timeout)
                self._served = True
                return self
            except _PortTaken as exc:
                self._reap()
                if time.monotonic() < same_port_until:
                    log.warning("port %s is still held (%s); retrying it", self.port, exc)
                    time.sleep(0.25)
                    continue
                hops += 1
                if not self._auto_port or hops >= _PORT_ATTEMPTS:
                    raise BrokerError(
                        f"mosquitto could not listen on {self.host}:{self.port}: {exc}. "
                        "Another program holds the port; choose another (or 0 for a free one).\n"
                        + self.log_tail()
                    ) from None
                log.warning("port %s was taken before mosquitto bound it (%s); trying a fresh port",
                            self.port, exc)
                self.settings.port = 0
                if self.settings.tls_port is not None and self._auto_tls_port:
                    self.settings.tls_port = 0
                self.write_files()

    def _log_paths(self) -> tuple[Path, Path]:
        return self.settings.log_path, self.settings.data_dir / "mosquitto.stderr"

    def _new_log_text(self) -> str:
        """What the broker logged since the last spawn."""
        out = []
        for path, offset in zip(self._log_paths(), self._log_offsets, strict=True):
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(offset)
                    out.append(f.read().decode(errors="replace"))
        return "\n".join(out)

    def _spawn(self) -> None:
        self._log_offsets = tuple(p.stat().st_size if p.exists() else 0 for p in self._log_paths())
        log_file = open(self.settings.data_dir / "mosquitto.stderr", "ab")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [self.binary, "-c", str(self.settings.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                preexec_fn=_raise_fd_limit,  # noqa: PLW1509
                start_new_session=True,
            )
        finally:
            log_file.close()

    def _reap(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(10)
        self._proc = None

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until *our* mosquitto accepts the hub user's MQTT CONNECT, or raise with the
        broker's log. A TCP connect alone proves nothing: another process may own the port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                if "Address already in use" in self._new_log_text():
                    raise _PortTaken("address already in use")
                raise BrokerError(
                    f"mosquitto exited with code {self._proc.returncode} at start-up:\n"
                    + self.log_tail()
                )
            answer = mqtt_probe(self.host, self.port, self.settings.hub_user,
                                self.settings.hub_password)
            if answer == 0 and (self._proc is None or self._proc.poll() is None):
                return
            if answer not in (None, 0):
                # An MQTT server that refuses our own hub user is someone else's broker,
                # unless ours has just died (then the check above reports why).
                time.sleep(0.1)
                if self._proc is not None and self._proc.poll() is not None:
                    continue
                raise _PortTaken(f"another MQTT server there refused the hub user (CONNACK {answer})")
            time.sleep(0.02)
        raise BrokerError(
            f"mosquitto did not answer MQTT on {self.host}:{self.port} within {timeout}s:\n"
            + self.log_tail()
        )

    def reload(self) -> None:
        """SIGHUP: re-read password and ACL files (existing connections stay)."""
        if not self.running:
            raise BrokerError("cannot reload: the broker is not running")
        assert self._proc is not None
        self._proc.send_signal(signal.SIGHUP)
        # Mosquitto handles the signal in its main loop; give it a moment to re-read.
        time.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._proc = None

    def kill(self) -> None:
        """kill -9, for fault-injection tests. Persistence keeps what was saved."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 30) -> str:
        chunks = []
        for path in (self.settings.log_path, self.settings.data_dir / "mosquitto.stderr"):
            if path.exists():
                chunks += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(chunks[-lines:]) or "(no broker log)"

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_PORT_ATTEMPTS = 5


class _PortTaken(BrokerError):
    """Another process owns the port mosquitto was told to listen on."""


def mqtt_probe(host: str, port: int, username: str, password: str, timeout: float = 2.0) -> int | None:
    """One MQTT 3.1.1 CONNECT/CONNACK exchange: the CONNACK return code (0: accepted), or
    None when nothing answered like an MQTT server (refused, closed, silent or garbage)."""

    def field(data: bytes) -> bytes:
        return len(data).to_bytes(2, "big") + data

    body = (field(b"MQTT") + bytes([4, 0xC2]) + (10).to_bytes(2, "big")
            + field(f"cityops-probe-{secrets.token_hex(4)}".encode())
            + field(username.encode()) + field(password.encode()))
    length, rest = b"", len(body)
    while True:  # MQTT's variable-length "remaining length"
        byte, rest = rest % 128, rest // 128
        length += bytes([byte | (0x80 if rest else 0)])
        if not rest:
            break
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"\x10" + length + body)
            reply = b""
            while len(reply) < 4:
                chunk = s.recv(4 - len(reply))
                if not chunk:
                    return None
                reply += chunk
            if reply[:2] != b"\x20\x02":
                return None
            if reply[3] == 0:
                s.sendall(b"\xe0\x00")  # DISCONNECT
            return reply[3]
    except OSError:
        return None


def _raise_fd_limit() -> None:
    """Let the broker hold as many connections as the hard limit allows (10,000 agents)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1_048_576
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
