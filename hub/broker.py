"""Run and manage Eclipse Mosquitto for cityops.

One module owns everything about the broker: the config file (listeners, persistence,
size and queue limits), the password file (Mosquitto's PBKDF2-SHA512 ``$7$`` format,
written here without a subprocess), the ACL file (generated from the topic grammar in
:mod:`protocol.topics`), and the child process (start, health check, reload, stop, kill).

The demo, the benchmarks and every test that needs a broker use :class:`MosquittoBroker`;
nothing relies on a broker somebody started by hand.

Production installs usually run Debian's mosquitto under systemd: ``cityops-hub broker
write-config`` writes the same files for it (the same two-listener layout: a listener of
the hub's own, ``broker.hub_host:hub_port``, and the agents'), and :class:`BrokerAuth`
reloads it with a configured command (an argument list, never a shell string).
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import hmac
import json
import logging
import os
import pwd
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protocol.errors import CityopsError
from protocol.ids import is_safe_id, new_secret, reserved_agent_id
from protocol.limits import BROKER_MESSAGE_SIZE_LIMIT
from protocol.topics import acl_lines

log = logging.getLogger(__name__)

__all__ = [
    "BrokerAuth",
    "BrokerError",
    "BrokerSettings",
    "MosquittoBroker",
    "external_broker_warnings",
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


MIB = 1024 * 1024

# The hub session's queue bound (docs/hub.md, "Broker limits"): a 15-minute hub outage at
# the design peak of 1,000 single-event messages a second is 900,000 messages of about
# 1 KB. Beyond either bound Mosquitto drops new messages for that session; the agents'
# outboxes resend whatever the hub has not acknowledged, so the bound costs time, not data.
HUB_QUEUE_MESSAGES = 1_000_000
HUB_QUEUE_BYTES = 1024 * MIB


@dataclass
class BrokerSettings:
    """What the generated mosquitto.conf says. Defaults suit one district on one machine."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port when the broker starts
    hub_user: str = "hub"
    hub_password: str = field(default_factory=lambda: new_secret("mqp"))
    # The hub's own listener on the loopback (0: a free port). Set, the agents' listeners
    # know only agents (their own password and ACL files, client id = user name) and the
    # hub user exists only here (the managed broker, `broker write-config`). None: one
    # listener for the hub and agents alike (tests that play the hub themselves).
    internal_port: int | None = None
    internal_host: str = "127.0.0.1"
    persistence: bool = True
    autosave_interval_s: int = 30
    message_size_limit: int = BROKER_MESSAGE_SIZE_LIMIT
    max_inflight_messages: int = 100  # per client, QoS 1 messages in flight to it
    max_queued_messages: int = HUB_QUEUE_MESSAGES  # per client, queued while it is slow or away
    max_queued_bytes: int = HUB_QUEUE_BYTES  # per client, payload bytes in that queue
    max_connections: int = -1
    log_max_bytes: int = 10 * MIB  # mosquitto.log is rotated to mosquitto.log.1 beyond this
    log_check_s: float = 0.5  # how often the size is checked while the broker runs
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
    def isolated(self) -> bool:
        """The hub has a listener of its own that agents cannot use."""
        return self.internal_port is not None

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def password_path(self) -> Path:
        """The agents' password file (and the hub's too when not isolated)."""
        return self.data_dir / "passwd"

    @property
    def hub_password_path(self) -> Path:
        """The hub's own listener's password file: the hub user alone."""
        return self.data_dir / "passwd.hub"

    @property
    def acl_path(self) -> Path:
        return self.data_dir / "acl"

    @property
    def hub_acl_path(self) -> Path:
        return self.data_dir / "acl.hub"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "mosquitto.log"

    @property
    def pid_path(self) -> Path:
        """The running broker and the hub that owns it (see :func:`reap_leftover_brokers`)."""
        return self.data_dir / "mosquitto.pid"

    @property
    def persistence_dir(self) -> Path:
        return self.data_dir / "persist"


def split_acl(hub_user: str) -> tuple[list[str], list[str]]:
    """The generated ACL split in two: the agents' patterns and the hub user's section."""
    lines = acl_lines(hub_user)
    at = lines.index(f"user {hub_user}")
    head = [line for line in lines[:at] if line.strip()]
    return head, [lines[0], *lines[at:]]


def hub_share_group(data_dir: Path, prefix: str) -> str:
    """The hub receivers' shared-subscription group: ``prefix`` and a secret kept in
    ``data_dir``. Mosquitto (2.0) does not check subscription filters against its ACL
    file, so any client that knows a group's name can join it and take a share of its
    messages; a group agents cannot name is one they cannot join. The secret is kept
    across restarts because the receivers' persistent sessions are subscribed to it."""
    path = Path(data_dir) / "share-group"
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        secret = ""
    if not (secret and is_safe_id(secret)):
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_hex(12)
        _write_atomic(path, secret + "\n", 0o600)
    group = f"{prefix}-{secret}"
    if not is_safe_id(group):
        raise BrokerError(f"shared group prefix {prefix!r} is too long or not a valid id")
    return group


def external_broker_warnings(*, hub_port: int | None, hub_user: str, agent_users: Sequence[str],
                             client_id_prefix: str, password_path: Path) -> list[str]:
    """What start-up says about an external broker's isolation of the hub (issue 17, point
    10): nothing when the hub has a listener of its own and the agents' password file does
    not know the hub user; otherwise the risk and the fix, one message each."""
    fix = ("set broker.hub_port (e.g. 1884; broker.hub_host defaults to 127.0.0.1) in hub.yaml, "
           "run `cityops-hub broker write-config` and restart Mosquitto (docs/hub.md, "
           "\"An external broker\")")
    if hub_port is None:
        return [f"external broker without broker.hub_port: the hub's clients share the agents' "
                f"listener, so an enrolled agent can connect with the hub's client ids "
                f"({client_id_prefix}-link, {client_id_prefix}-recv-N), push them off the broker "
                f"and take their sessions, and the hub user {hub_user!r} can log in where agents "
                f"do. To fix it, {fix}"]
    if hub_user in agent_users:
        return [f"the agents' password file {password_path} still holds the hub user "
                f"{hub_user!r}: if the agents' listener uses it, the hub user can log in where "
                f"agents do. To fix it, run `cityops-hub broker write-config` again (it moves the "
                f"hub user to passwd.hub) and restart Mosquitto"]
    return []


def _write_atomic(path: Path, text: str, mode: int, run_as: str | None = None) -> None:
    """Write ``path`` through a temp file of its own (never a shared name), fsync it,
    rename it over ``path`` and fsync the folder: a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        _chown_for_broker(Path(tmp), run_as)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class BrokerAuth:
    """The broker's password file: add and remove agents, keep the hub user.

    Every change is one read-modify-write under a lock (a thread lock and ``flock`` on
    ``passwd.lock``, so concurrent enrollments and a second process serialise), written
    atomically (own temp file, fsync, rename). The file is mode 0600 (0640 with the
    broker's group when it runs as another user). ``reload`` tells the broker to re-read
    password and ACL files.

    With an isolated hub listener (``settings.internal_port``) the hub user lives in its
    own ``passwd.hub`` and is never in the agents' file.
    """

    _thread_locks: dict[Path, threading.Lock] = {}
    _thread_locks_guard = threading.Lock()

    def __init__(self, settings: BrokerSettings, reload_command: Sequence[str] | None = None):
        self.settings = settings
        self.reload_command = list(reload_command) if reload_command else None
        self._broker: MosquittoBroker | None = None

    def attach(self, broker: MosquittoBroker) -> None:
        self._broker = broker

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        path = self.settings.password_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with BrokerAuth._thread_locks_guard:
            lock = BrokerAuth._thread_locks.setdefault(path.resolve(), threading.Lock())
        with lock:
            fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing drops the flock

    def _read(self, path: Path | None = None) -> dict[str, str]:
        entries: dict[str, str] = {}
        path = path or self.settings.password_path
        if not path.exists():
            return entries
        for raw in path.read_text().splitlines():
            if raw.strip() and not raw.startswith("#") and ":" in raw:
                user, hashed = raw.split(":", 1)
                entries[user] = hashed
        return entries

    def _write(self, entries: dict[str, str], path: Path | None = None) -> None:
        path = path or self.settings.password_path
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, "".join(f"{u}:{h}\n" for u, h in sorted(entries.items())), 0o600,
                      self.settings.run_as)

    def _check_agent_user(self, username: str) -> None:
        if not is_safe_id(username):
            raise BrokerError(f"broker user {username!r} is not a valid id")
        if self.settings.isolated and username == self.settings.hub_user:
            raise BrokerError(f"{username!r} is the hub's own broker user, not an agent")
        why = reserved_agent_id(username, hub_user=self.settings.hub_user)  # the one list
        if why:
            raise BrokerError(f"broker user {username!r} is reserved for the hub: {why}")

    def users(self) -> list[str]:
        return sorted(self._read())

    def set_user(self, username: str, password: str) -> None:
        self._check_agent_user(username)
        hashed = hash_password(password)
        with self._locked():
            entries = self._read()
            entries[username] = hashed
            self._write(entries)

    def set_users(self, credentials: dict[str, str]) -> None:
        """Add or replace many users in one write (fleets of thousands)."""
        for username in credentials:
            self._check_agent_user(username)
        hashed = {u: hash_password(pw) for u, pw in credentials.items()}
        with self._locked():
            entries = self._read()
            entries.update(hashed)
            self._write(entries)

    def set_hub_user(self) -> None:
        """Write the hub user: into ``passwd.hub`` (and out of the agents' file) when the
        hub has its own listener, else into the shared file."""
        s = self.settings
        hashed = hash_password(s.hub_password)
        with self._locked():
            entries = self._read()
            if s.isolated:
                self._write({s.hub_user: hashed}, s.hub_password_path)
                if entries.pop(s.hub_user, None) is not None or not s.password_path.exists():
                    self._write(entries)
            else:
                entries[s.hub_user] = hashed
                self._write(entries)

    def remove_user(self, username: str) -> bool:
        with self._locked():
            entries = self._read()
            if entries.pop(username, None) is None:
                return False
            self._write(entries)
            return True

    def check(self, username: str, password: str) -> bool:
        hashed = self._read().get(username)
        return hashed is not None and verify_password(password, hashed)

    def write_acl(self) -> None:
        s = self.settings
        s.acl_path.parent.mkdir(parents=True, exist_ok=True)
        if s.isolated:
            agents, hub = split_acl(s.hub_user)
            _write_atomic(s.acl_path, "\n".join(agents) + "\n", 0o600, s.run_as)
            _write_atomic(s.hub_acl_path, "\n".join(hub) + "\n", 0o600, s.run_as)
        else:
            _write_atomic(s.acl_path, "\n".join(acl_lines(s.hub_user)) + "\n", 0o600, s.run_as)

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
    """The mosquitto.conf text for ``settings`` (ports must be resolved).

    Isolated (``internal_port`` set): ``per_listener_settings true``; the first listener
    is the hub's, on the loopback, with ``passwd.hub``/``acl.hub``; the agents' listeners
    (plain and TLS) have the agents' files and ``use_username_as_clientid``, so an agent's
    client id is its user name and it cannot take over the hub's client ids or sessions.
    """
    s = settings
    run_as = s.run_as or pwd.getpwuid(os.geteuid()).pw_name
    lines = [
        "# generated by cityops (hub/broker.py); regenerate rather than edit",
        f"per_listener_settings {'true' if s.isolated else 'false'}",
        f"user {run_as}",
        f"message_size_limit {s.message_size_limit}",
        f"max_inflight_messages {s.max_inflight_messages}",
        f"max_queued_messages {s.max_queued_messages}",
        f"max_queued_bytes {s.max_queued_bytes}",
        "set_tcp_nodelay true",
        # The hub rotates this file by size (MosquittoBroker's log keeper; SIGHUP reopens it).
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

    def auth(password_path: Path, acl_path: Path) -> list[str]:
        return ["allow_anonymous false", f"password_file {password_path}", f"acl_file {acl_path}"]

    if s.isolated:
        lines += ["", "# the hub's own clients: loopback only, the hub user alone",
                  f"listener {s.internal_port} {s.internal_host}",
                  *auth(s.hub_password_path, s.hub_acl_path)]
        agent_lines = [*auth(s.password_path, s.acl_path), "use_username_as_clientid true"]
    else:
        lines += ["", *auth(s.password_path, s.acl_path)]
        agent_lines = []
    lines += ["", f"listener {s.port} {s.host}", f"max_connections {s.max_connections}",
              *agent_lines]
    if s.tls_port is not None:
        if not (s.tls_certfile and s.tls_keyfile):
            raise BrokerError("a TLS listener needs tls_certfile and tls_keyfile")
        lines += [
            "",
            f"listener {s.tls_port} {s.host}",
            f"max_connections {s.max_connections}",
            *agent_lines,
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
            ... agents connect to broker.host, broker.port; the hub user to
            broker.hub_host, broker.hub_port ...

    The broker's whole lifetime belongs to this object: ``start`` first stops a broker
    that an earlier run of the hub left behind on the same config (a ``kill -9`` of the
    hub; see :func:`reap_leftover_brokers`), on Linux the broker gets SIGTERM when the
    process that started it dies, and a thread keeps ``mosquitto.log`` under
    ``settings.log_max_bytes``.
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
        self._auto_internal_port = settings.internal_port == 0
        self._log_offsets: tuple[int, int] = (0, 0)
        self._keeper: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        self.log_rotations = 0

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
        if s.internal_port == 0:
            s.internal_port = free_port(s.internal_host)
        self.auth.set_hub_user()
        self.auth.write_acl()
        _write_atomic(s.config_path, render_config(s), 0o644)
        return s.config_path

    # -- process -----------------------------------------------------------------
    @property
    def host(self) -> str:
        """Where agents connect."""
        return self.settings.host

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def hub_host(self) -> str:
        """Where the hub user connects: its own listener when isolated."""
        return self.settings.internal_host if self.settings.isolated else self.settings.host

    @property
    def hub_port(self) -> int:
        s = self.settings
        return s.internal_port if s.internal_port is not None else s.port

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
        s = self.settings
        if s.port == 0:
            self._auto_port = True
        if s.internal_port == 0:
            self._auto_internal_port = True
        if not s.config_path.exists() or s.port == 0 or s.internal_port == 0:
            self.write_files()
        reap_leftover_brokers(s)
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
                self._started()
                return self
            except _PortTaken as exc:
                self._reap()
                if time.monotonic() < same_port_until:
                    log.warning("port %s is still held (%s); retrying it", self.port, exc)
                    time.sleep(0.25)
                    continue
                hops += 1
                movable = self._auto_port or self._auto_internal_port
                if not movable or hops >= _PORT_ATTEMPTS:
                    raise BrokerError(
                        f"mosquitto could not listen on {self.host}:{self.port}"
                        + (f" and {s.internal_host}:{s.internal_port}" if s.isolated else "")
                        + f": {exc}. Another program holds the port; choose another "
                        "(or 0 for a free one).\n" + self.log_tail()
                    ) from None
                log.warning("a port was taken before mosquitto bound it (%s); trying fresh ports",
                            exc)
                if self._auto_port:
                    s.port = 0
                if s.tls_port is not None and self._auto_tls_port:
                    s.tls_port = 0
                if s.internal_port is not None and self._auto_internal_port:
                    s.internal_port = 0
                self.write_files()

    def _started(self) -> None:
        """Record the broker in the PID file and start keeping its log small."""
        assert self._proc is not None
        record = {"pid": self._proc.pid, "start": _proc_start(self._proc.pid),
                  "config": str(self.settings.config_path), "hub_pid": os.getpid(),
                  "hub_start": _proc_start(os.getpid())}
        _write_atomic(self.settings.pid_path, json.dumps(record) + "\n", 0o644)
        self._keeper_stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep_log, args=(self._proc, self._keeper_stop),
                                        name="broker-log-keeper", daemon=True)
        self._keeper.start()

    def _log_paths(self) -> tuple[Path, Path]:
        return self.settings.log_path, self.settings.data_dir / "mosquitto.stderr"

    def _new_log_text(self) -> str:
        """What the broker logged since the last spawn."""
        out = []
        for path, offset in zip(self._log_paths(), self._log_offsets, strict=True):
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(min(offset, path.stat().st_size))
                    out.append(f.read().decode(errors="replace"))
        return "\n".join(out)

    def _spawn(self) -> None:
        self._log_offsets = tuple(p.stat().st_size if p.exists() else 0 for p in self._log_paths())
        stderr_path = self.settings.data_dir / "mosquitto.stderr"
        if stderr_path.exists() and stderr_path.stat().st_size > self.settings.log_max_bytes:
            os.replace(stderr_path, stderr_path.with_name(stderr_path.name + ".1"))
            self._log_offsets = (self._log_offsets[0], 0)
        log_file = open(stderr_path, "ab")  # noqa: SIM115
        argv = [*_pdeathsig_prefix(), self.binary, "-c", str(self.settings.config_path)]
        _raise_fd_limit()  # inherited by the child
        try:
            # Started from one long-lived thread: Linux sends the parent-death signal when
            # the *thread* that forked the child ends, and the caller's may be a pool
            # thread that ends early. No preexec_fn: Python code between fork and exec can
            # deadlock in a process with other threads (it did, with TensorFlow's loaded);
            # setpriv sets the parent-death signal and execs mosquitto in its place.
            self._proc = _spawner().submit(
                lambda: subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                    argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                    start_new_session=True)).result()
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
            answer = mqtt_probe(self.hub_host, self.hub_port, self.settings.hub_user,
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
            f"mosquitto did not answer MQTT on {self.hub_host}:{self.hub_port} within {timeout}s:\n"
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

    # -- the log -------------------------------------------------------------------
    def rotate_log(self) -> bool:
        """Move ``mosquitto.log`` to ``mosquitto.log.1`` (replacing the older one) once it
        is larger than ``log_max_bytes``; SIGHUP makes the broker reopen its log file."""
        path = self.settings.log_path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        if size <= self.settings.log_max_bytes or not self.running:
            return False
        assert self._proc is not None
        os.replace(path, path.with_name(path.name + ".1"))
        self._proc.send_signal(signal.SIGHUP)
        self.log_rotations += 1
        log.info("broker log reached %d bytes (cap %d); rotated to %s.1", size,
                 self.settings.log_max_bytes, path.name)
        return True

    def _keep_log(self, proc: subprocess.Popen[bytes], stop: threading.Event) -> None:
        while not stop.wait(self.settings.log_check_s) and proc.poll() is None:
            try:
                self.rotate_log()
            except OSError as exc:
                log.error("could not rotate the broker log %s: %s", self.settings.log_path, exc)

    def _stop_keeper(self) -> None:
        self._keeper_stop.set()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join(5)
        self._keeper = None

    # -- stopping ------------------------------------------------------------------
    def _forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.settings.pid_path.unlink()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_keeper()
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("mosquitto (pid %s) did not stop within %.0fs of SIGTERM; killing it",
                          self._proc.pid, timeout)
                self._proc.kill()
                self._proc.wait(timeout)
        self._proc = None
        self._forget()

    def terminate_now(self, timeout: float = 3.0) -> None:
        """SIGTERM (then SIGKILL) the broker from any thread, without waiting on locks or
        touching state another thread may be using: the last resort of a hub that must exit."""
        self._keeper_stop.set()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        self._forget()

    def kill(self) -> None:
        """kill -9, for fault-injection tests. Persistence keeps what was saved."""
        self._stop_keeper()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None
        self._forget()

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 30) -> str:
        chunks = []
        for path in self._log_paths():
            if path.exists():
                chunks += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(chunks[-lines:]) or "(no broker log)"

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a broker left behind ----------------------------------------------------------------

def _proc_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot; Linux), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def _proc_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat[stat.rindex(")") + 2:][:1] not in ("Z", "X")  # a zombie has exited


def _runs_config(pid: int, config_path: Path) -> bool:
    """True when process ``pid`` is a mosquitto started on ``config_path``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (len(argv) >= 3 and os.path.basename(argv[0]).startswith(b"mosquitto")
            and argv[1:3] == [b"-c", os.fsencode(config_path)])


def _brokers_on(config_path: Path) -> set[int]:
    """Every live mosquitto started on ``config_path`` (Linux /proc)."""
    found: set[int] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        pid = int(entry.name) if entry.name.isdigit() else 0
        if pid and _runs_config(pid, config_path) and _proc_alive(pid):
            found.add(pid)
    return found


def reap_leftover_brokers(settings: BrokerSettings, grace_s: float = 5.0) -> list[int]:
    """Stop every mosquitto running on this data dir's config that no live hub owns.

    A hub killed with ``kill -9`` (or a power-cycled container that kept its PID
    namespace) leaves its broker running in its own session; a new broker could not bind
    the port, and the old one would never re-read the password file. The PID file names
    the broker and the hub that started it: a broker whose hub is another live process is
    refused (two hubs on one data dir), anything else running our config is stopped
    (SIGTERM, then SIGKILL after ``grace_s``) with a log line. Returns the stopped pids.
    """
    config = settings.config_path
    record: dict = {}
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(settings.pid_path.read_text())
    hub_pid = record.get("hub_pid")
    if (isinstance(hub_pid, int) and hub_pid != os.getpid() and _proc_alive(hub_pid)
            and _proc_start(hub_pid) == record.get("hub_start")
            and isinstance(record.get("pid"), int) and _runs_config(record["pid"], config)
            and _proc_alive(record["pid"])):
        raise BrokerError(
            f"another hub (pid {hub_pid}) runs the broker of {settings.data_dir} "
            f"(mosquitto pid {record['pid']}); stop it first, or give this hub its own "
            "broker.data_dir")
    leftovers = _brokers_on(config)
    if isinstance(record.get("pid"), int) and _runs_config(record["pid"], config) \
            and _proc_alive(record["pid"]):
        leftovers.add(record["pid"])
    for pid in sorted(leftovers):
        log.warning("stopping mosquitto pid %s, left running on %s by an earlier run of the "
                    "hub (it would hold the port and never re-read the password file)", pid, config)
        _end_process(pid, grace_s)
    return sorted(leftovers)


def _end_process(pid: int, grace_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not _proc_alive(pid):
                return
            time.sleep(0.05)
    raise BrokerError(f"mosquitto pid {pid} did not exit after SIGKILL")


# -- starting the child ---------------------------------------------------------------------

_SPAWNER: concurrent.futures.ThreadPoolExecutor | None = None
_SPAWNER_GUARD = threading.Lock()


def _spawner() -> concurrent.futures.ThreadPoolExecutor:
    """One thread that forks every broker and lives until the interpreter exits."""
    global _SPAWNER
    with _SPAWNER_GUARD:
        if _SPAWNER is None:
            _SPAWNER = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="cityops-broker-parent")
        return _SPAWNER


@functools.cache
def _pdeathsig_prefix() -> tuple[str, ...]:
    """``setpriv --pdeathsig TERM --`` (util-linux, in every Debian): mosquitto gets SIGTERM
    when the hub dies (Linux; cleared by the kernel if mosquitto later drops root for
    ``user``, so the PID file check at the next start stays the guarantee). Without
    setpriv, nothing: the PID file check alone."""
    if not sys.platform.startswith("linux"):
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.warning("setpriv not found (Debian: util-linux): the broker will not stop by itself if the hub "
                    "is killed; the hub's next start stops it (PID file)")
        return ()
    return (setpriv, "--pdeathsig", "TERM", "--")


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
