"""Chunks for the agents that ask: a request is answered only for the release currently
desired for (and published to) that agent, and chunk publishes go through a token bucket
so a rollout to a thousand agents cannot crowd out the acks of ingest.

:class:`TokenBucket` is the pure part (a clock passed in); :class:`ChunkServer` is the
thread that publishes, with a bounded queue of requests (a full queue drops the request,
counted and logged: the agent asks again after its timeout)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from protocol.releases import ChunkRequest, ReleaseRef, release_chunk
from protocol.topics import QOS, Channel, agent_topic

__all__ = ["ChunkJob", "ChunkServer", "TokenBucket", "chunk_indices"]

log = logging.getLogger(__name__)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self.at = now

    def take(self, now: float) -> float:
        """Take one token: 0 when one was there, else how long to wait before sending
        (the token is taken ahead: the caller sleeps that long, then sends)."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def chunk_indices(request: ChunkRequest, ref: ReleaseRef) -> range:
    """The chunks of ``ref`` a request asks for that exist (empty: none of them)."""
    return range(request.first, min(request.first + request.count, ref.chunks))


@dataclass(frozen=True)
class ChunkJob:
    agent_id: str
    ref: ReleaseRef
    package: bytes
    indices: range


class ChunkServer:
    """Publishes the chunks of queued jobs on ``publish(topic, payload, qos)``."""

    def __init__(self, publish: Callable[[str, bytes, int], bool], rate: float,
                 max_queued: int = 20_000, stats: Counter | None = None) -> None:
        self.publish = publish
        self.bucket = TokenBucket(rate, burst=max(rate / 10, 16), now=time.monotonic())
        self.jobs: queue.Queue[ChunkJob | None] = queue.Queue(max_queued)
        self.stats = stats if stats is not None else Counter()
        self._thread = threading.Thread(target=self._run, name="hub-release-chunks", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        try:
            self.jobs.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def submit(self, job: ChunkJob) -> bool:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            self.stats["requests_dropped_busy"] += 1
            if self.stats["requests_dropped_busy"] % 100 == 1:
                log.warning("release chunk queue full (%d requests): request of %s for %s dropped "
                            "(%d so far; the agent asks again; raise releases.max_chunks_per_s if "
                            "ingest has room)", self.jobs.maxsize, job.agent_id, job.ref.release_id,
                            self.stats["requests_dropped_busy"])
            return False
        return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            job = self.jobs.get()
            if job is None:
                return
            topic = agent_topic(job.agent_id, Channel.BLOBS)
            for i in job.indices:
                if self._stopping.is_set():
                    return
                wait = self.bucket.take(time.monotonic())
                if wait > 0:
                    self.stats["throttled"] += 1
                    time.sleep(wait)
                try:
                    ok = self.publish(topic, release_chunk(job.package, job.ref, i), QOS[Channel.BLOBS])
                except Exception:
                    log.exception("chunk %d of %s for %s could not be published", i, job.ref.release_id,
                                  job.agent_id)
                    ok = False
                self.stats["chunks_served" if ok else "chunks_unpublished"] += 1
