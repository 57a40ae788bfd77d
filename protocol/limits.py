"""Size and value limits of protocol v1. Both sides enforce them; the broker config is
derived from them (``message_size_limit``), so an oversized message is refused as early as
possible and never half-processed.

Numbers are bounded too: every integer a message carries fits SQLite's signed 64-bit
INTEGER with room to spare, and sequence numbers and counts stay below 2**53 so any JSON
reader (a browser's included) holds them exactly. Floats must be finite. A value outside
these bounds is refused at validation, with its field, before anything reaches the store.
"""

from __future__ import annotations

__all__ = [
    "BROKER_MESSAGE_SIZE_LIMIT",
    "MAX_CONFIG_BYTES",
    "MAX_EVENTS_MESSAGE_BYTES",
    "MAX_EVENTS_PER_MESSAGE",
    "MAX_EVENT_BYTES",
    "MAX_SNAPSHOT_BYTES",
    "MAX_SNAPSHOT_HEADER_BYTES",
    "MAX_STATUS_BYTES",
    "MAX_TELEMETRY_BYTES",
    "MAX_ACK_BYTES",
    "MAX_LIVE_FPS",
    "MAX_LIVE_FRAME_BYTES",
    "MAX_LIVE_HEADER_BYTES",
    "MAX_LIVE_REQUEST_BYTES",
    "MAX_LIVE_SECONDS",
    "MAX_RELEASE_BYTES",
    "MAX_RELEASE_CHUNK_BYTES",
    "MAX_RELEASE_HEADER_BYTES",
    "MAX_RELEASE_MESSAGE_BYTES",
    "MAX_COUNT",
    "MAX_DEPTH",
    "MAX_SEQ",
    "MAX_STORE_INT",
]

KIB = 1024

MAX_EVENT_BYTES = 8 * KIB  # one event, encoded as JSON
MAX_EVENTS_PER_MESSAGE = 500  # events in one batched events message
MAX_EVENTS_MESSAGE_BYTES = 256 * KIB  # a batched events message
MAX_SNAPSHOT_BYTES = 256 * KIB  # the JPEG inside a snapshot message
MAX_SNAPSHOT_HEADER_BYTES = 2 * KIB  # its JSON header line
MAX_STATUS_BYTES = 8 * KIB
MAX_TELEMETRY_BYTES = 64 * KIB
MAX_ACK_BYTES = 64 * KIB
MAX_CONFIG_BYTES = 128 * KIB
# Live view (hub → agent ``live``, agent → hub ``frames``): a request is small; a frame's
# JPEG is capped here, the agent's camera config picks the working size below it (50 kB
# by default); a request asks for at most MAX_LIVE_SECONDS, so a hub that goes away never
# leaves a camera streaming for long.
MAX_LIVE_REQUEST_BYTES = 1 * KIB
MAX_LIVE_HEADER_BYTES = 1 * KIB
MAX_LIVE_FRAME_BYTES = 128 * KIB
MAX_LIVE_SECONDS = 300
MAX_LIVE_FPS = 5.0  # frames a second a stream may carry (the hub drops faster ones)

# Releases (protocol/releases.py): a chunk of a package, its header line, and the small
# JSON messages around it (a desired release, a chunk request, a state report).
MAX_RELEASE_CHUNK_BYTES = 128 * KIB
MAX_RELEASE_HEADER_BYTES = 1 * KIB
MAX_RELEASE_MESSAGE_BYTES = 2 * KIB
MAX_RELEASE_BYTES = 32 * 1024 * KIB  # a whole package: a detector is 1-5 MB

MAX_STORE_INT = 2**63 - 1  # SQLite's INTEGER is a signed 64-bit number
MAX_SEQ = 2**53 - 1  # a sequence number, exact in every JSON reader (JavaScript's included)
MAX_COUNT = 2**53 - 1  # counters, sizes, versions: the same bound
MAX_DEPTH = 32  # JSON nesting: a legal message needs 5 levels; deeper is refused unparsed

# The broker refuses anything larger than the largest legal message.
BROKER_MESSAGE_SIZE_LIMIT = max(
    MAX_EVENTS_MESSAGE_BYTES,
    MAX_SNAPSHOT_BYTES + MAX_SNAPSHOT_HEADER_BYTES + 1,
    MAX_TELEMETRY_BYTES,
    MAX_ACK_BYTES,
    MAX_CONFIG_BYTES,
    MAX_LIVE_FRAME_BYTES + MAX_LIVE_HEADER_BYTES + 1,
    MAX_RELEASE_MESSAGE_BYTES,
    MAX_RELEASE_CHUNK_BYTES + MAX_RELEASE_HEADER_BYTES + 1,
)
