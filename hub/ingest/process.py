"""Receivers as child processes on a shared subscription.

A paho client spends most of a CPU core on its network loop at full rate, so the hub
runs its receivers in their own processes (``ingest.receivers: N``): each child owns
one MQTT connection on ``$share/{group}/...`` and ships batches to the hub process over a
pipe; the hub's one writer stores and acks. What a child decodes itself is set by
``ingest.decode_in_receivers``: ``all`` (default: the writer, the one thread every
message must pass, is then left with storing and merging), ``batches`` (only replay
messages of many events), or ``none`` (the writer decodes everything). With the
receive-tuned paho client (``fastpaho``) a receiver has the CPU to spare for validation;
measured in one run on 2 cores, ``all`` moved single-event ingest from about 0.63 to
0.75-0.89 of the raw ceiling (docs/benchmarks.md, Hub). Decoded messages travel as plain records, cheap to unpickle. With
``receivers: 0`` the receiver is a thread in the hub process instead (tests, tiny hubs).

The child stops on SIGTERM: it disconnects, hands over what it holds, closes the pipe.
It also stops when the hub process goes away (the pipe breaks).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterator

from ..broker import BrokerError
from .decode import classify, events_in
from .mqtt import Raw, Receiver, ReceiverSettings

__all__ = ["ReceiverProcess", "decoded_chunks", "receiver_main"]

log = logging.getLogger(__name__)


def receiver_main(settings: ReceiverSettings, conn: multiprocessing.connection.Connection,
                  ready: multiprocessing.connection.Connection, log_level: str = "WARNING") -> None:
    """Entry point of a receiver child process."""
    logging.basicConfig(level=log_level, format="%(asctime)s receiver %(levelname)s %(message)s")
    stop = threading.Event()
    broken = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the hub process decides when we stop
    parent = os.getppid()

    decode_all = settings.decode == "all"
    decode_batches = settings.decode in ("all", "batches")

    def send(items: list) -> None:
        if broken.is_set():
            return
        try:
            conn.send_bytes(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, EOFError):
            broken.set()
            stop.set()

    def sink(batch: list[Raw]) -> None:
        if not decode_batches:
            send(batch)
            return
        for chunk in decoded_chunks(batch, decode_all):
            send(chunk)

    receiver = Receiver(settings, sink)
    try:
        receiver.start()
    except Exception as exc:
        ready.send(f"error: {exc}")
        return
    ready.send("ok")
    while not stop.wait(0.5):
        if os.getppid() != parent:
            break
    receiver.stop()
    conn.close()


def decoded_chunks(batch: list[Raw], decode_all: bool = True,
                   events: int | None = None) -> Iterator[list]:
    """Decode ``batch`` in arrival order (every message when ``decode_all``, else only
    replay arrays) and yield it in pieces of about ``events`` events (HANDOVER_EVENTS).

    Validation runs here, in parallel with the writer, which gets plain records. Pieces,
    not the whole batch: a backlog of replay messages arrives as one receive batch of
    tens of thousands of events, and the writer would wait for all of it to be decoded,
    then the receiver for the writer."""
    limit = HANDOVER_EVENTS if events is None else events
    out: list = []
    weight = 0
    for topic, payload in batch:
        # classify never raises: a message that fails becomes its own refusal, and the
        # other messages of the batch go on (none is lost with a failed hand-over).
        item = classify(topic, payload) if decode_all or payload[:1] == b"[" else (topic, payload)
        weight += events_in(item)
        out.append(item)
        if weight >= limit:
            yield out
            out, weight = [], 0
    if out:
        yield out


# Events per hand-over from a receiver child to the writer: small enough that the writer
# starts on a backlog while the receiver still decodes it (pipelining), large enough that
# pickling and the pipe cost little per event.
HANDOVER_EVENTS = 2000

_F_SETPIPE_SZ = 1031  # Linux


def _grow_pipe(fd: int, size: int = 1 << 20) -> None:
    """A 1 MiB pipe lets a receiver hand over a batch without waiting for the hub to read."""
    with contextlib.suppress(OSError):  # not Linux, or over pipe-max-size: the default works
        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)


class ReceiverProcess:
    """The hub-side handle of one receiver child: starts it, reads its pipe into ``sink``."""

    def __init__(self, settings: ReceiverSettings, sink: Callable[[list[Raw]], None],
                 log_level: str = "WARNING") -> None:
        self.settings = settings
        self.log_level = log_level
        ctx = multiprocessing.get_context("spawn")
        self._recv, send = ctx.Pipe(duplex=False)
        _grow_pipe(self._recv.fileno())
        self._ready_recv, ready_send = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=receiver_main, args=(settings, send, ready_send, log_level),
                                   name=f"cityops-hub-receiver-{settings.mqtt.client_id}",
                                   daemon=True)
        self._send_end = send
        self._ready_send = ready_send
        self.sink = sink
        self.received = 0
        self._reader = threading.Thread(target=self._read, name="hub-receiver-pipe", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self.process.start()
        self._send_end.close()  # only the child writes
        self._ready_send.close()
        if not self._ready_recv.poll(timeout):
            self.process.kill()
            raise RuntimeError("receiver process did not start in time")
        answer = self._ready_recv.recv()
        if answer != "ok":
            self.process.join(5)
            raise BrokerError(f"receiver process: {answer}")
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self._recv.recv_bytes()
            except (EOFError, OSError):
                return
            batch = pickle.loads(data)  # noqa: S301 - our own child, over a private pipe
            self.received += len(batch)
            self.sink(batch)

    def alive(self) -> bool:
        return self.process.is_alive() and self._reader.is_alive()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self._reader.join(timeout)
        self._recv.close()
