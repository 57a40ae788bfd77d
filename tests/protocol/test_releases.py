"""The release contract: chunks that check themselves, references whose sizes add up, and
model packages refused with a reason before anything unpacks them."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime

import pytest

from protocol import limits
from protocol.codec import decode_message, encode
from protocol.errors import ProtocolError
from protocol.releases import (
    MAX_RELEASE_CHUNK_BYTES,
    MODEL_FILE,
    ChunkRequest,
    DesiredRelease,
    PackageProblem,
    ReleaseRef,
    ReleaseReport,
    ReleaseState,
    check_model_package,
    decode_release_chunk,
    release_chunk,
    sha256_hex,
)
from protocol.topics import RETAINED, Channel, acl_lines, agent_topic
from vision.models import REAL_MODEL


def package(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def real_package() -> bytes:
    d = REAL_MODEL.parent
    return package({MODEL_FILE: REAL_MODEL.read_bytes(), "labels.txt": (d / "labels.txt").read_bytes(),
                    "thresholds.json": (d / "thresholds.json").read_bytes()})


def ref_for(data: bytes, chunk: int = 64 * 1024) -> ReleaseRef:
    return ReleaseRef(release_id="det-7", name="detector", version=7, sha256=sha256_hex(data), bytes=len(data),
                      chunk_bytes=chunk, chunks=-(-len(data) // chunk))


def test_a_package_travels_in_chunks_that_reassemble_to_its_hash() -> None:
    data = real_package()
    ref = ref_for(data)
    parts = {}
    for i in range(ref.chunks):
        msg = release_chunk(data, ref, i)
        assert len(msg) <= limits.BROKER_MESSAGE_SIZE_LIMIT
        decoded = decode_message(agent_topic("cam-1", Channel.BLOBS), msg).message
        header, chunk = decoded
        assert header.index == i and header.count == ref.chunks and header.release_sha256 == ref.sha256
        parts[i] = chunk
    whole = b"".join(parts[i] for i in range(ref.chunks))
    assert sha256_hex(whole) == ref.sha256
    assert set(check_model_package(whole)) == {MODEL_FILE, "labels.txt", "thresholds.json"}


def test_a_chunk_altered_on_the_way_is_refused_naming_which() -> None:
    data = real_package()
    ref = ref_for(data)
    msg = bytearray(release_chunk(data, ref, 1))
    msg[-5] ^= 0xFF
    with pytest.raises(ProtocolError, match="chunk 2 of .*do not match"):
        decode_release_chunk(bytes(msg))
    with pytest.raises(ProtocolError, match="no JSON header line"):
        decode_release_chunk(b"x" * 2000)


def test_a_reference_whose_chunks_do_not_add_up_is_invalid() -> None:
    with pytest.raises(ValueError, match="make 2 chunks, not 3"):
        ReleaseRef(release_id="r", name="detector", version=1, sha256="0" * 64, bytes=100, chunk_bytes=64, chunks=3)
    with pytest.raises(ValueError):
        ReleaseRef(release_id="r", name="detector", version=1, sha256="0" * 64, bytes=100,
                   chunk_bytes=MAX_RELEASE_CHUNK_BYTES + 1, chunks=1)


def test_release_messages_round_trip_on_their_topics_and_desired_state_is_retained() -> None:
    now = datetime.now(UTC)
    ref = ref_for(b"x" * 1000, 512)
    msgs = {Channel.RELEASE: DesiredRelease(agent_id="cam-1", release=ref, rollout_id="ro-1", issued_at=now),
            Channel.FETCH: ChunkRequest(agent_id="cam-1", release_id="det-7", first=0, count=4, at=now),
            Channel.RELEASE_STATE: ReleaseReport(agent_id="cam-1", release_id="det-7", state=ReleaseState.FAILED,
                                                 reason="model would not load", at=now)}
    for channel, msg in msgs.items():
        assert decode_message(agent_topic("cam-1", channel), encode(msg)).message == msg
    with pytest.raises(ProtocolError, match="published on agent 'cam-2'"):
        decode_message(agent_topic("cam-2", Channel.FETCH), encode(msgs[Channel.FETCH]))
    assert RETAINED[Channel.RELEASE] and RETAINED[Channel.RELEASE_STATE] and not RETAINED[Channel.BLOBS]
    acl = acl_lines("hub")
    assert "pattern write cityops/v1/agents/%u/fetch" in acl
    assert "pattern read cityops/v1/agents/%u/blobs" in acl


@pytest.mark.parametrize(("files", "reason"), [
    ({"labels.txt": b"water\n"}, "has no cityops_detector_int8.tflite"),
    ({MODEL_FILE: b"not a model at all", "labels.txt": b"water\n"}, "not a TFLite model"),
    ({MODEL_FILE: b"\0\0\0\0TFL3rest"}, "no labels.txt"),
    ({MODEL_FILE: b"\0\0\0\0TFL3rest", "labels.txt": b"water\n", "run.sh": b"rm -rf /"}, "unexpected file"),
    ({MODEL_FILE: b"\0\0\0\0TFL3rest", "labels.txt": b"water\n",
      "thresholds.json": json.dumps({"min_score": {"water": 3}}).encode()}, r"score in \(0, 1\]"),
])
def test_a_bad_model_package_is_refused_with_the_reason(files: dict[str, bytes], reason: str) -> None:
    with pytest.raises(PackageProblem, match=reason):
        check_model_package(package(files))
    with pytest.raises(PackageProblem, match="not a zip"):
        check_model_package(b"PK but not really")


def test_an_agent_asks_for_the_window_after_its_first_missing_chunk_less_what_it_holds() -> None:
    from protocol.releases import FETCH_WINDOW, wanted_runs

    assert FETCH_WINDOW == 4
    assert wanted_runs(10, 0, set()) == [(0, 4)]
    assert wanted_runs(10, 2, {3}) == [(2, 1), (4, 2)]  # 3 arrived early (or is asked for)
    assert wanted_runs(5, 3, set()) == [(3, 2)]  # the window stops at the last chunk
    assert wanted_runs(10, 0, {0, 1, 2, 3}) == []  # all four asked for: wait
    assert wanted_runs(6, 6, set()) == []  # complete
