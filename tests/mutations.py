"""Prove the proof suites can fail: apply one deliberate breaking change at a time, run the
tests meant to catch it, record which failed, revert.

    .venv/bin/python tests/mutations.py            # every mutation, a markdown table
    .venv/bin/python tests/mutations.py M1 S2      # some of them
    .venv/bin/python tests/mutations.py --list

Each mutation replaces one exact snippet in one file (it must occur exactly once, so a
refactor that moves the code makes the mutation fail loudly instead of silently testing
nothing). The original file is always restored, also on Ctrl-C. Not part of the test run
(the name does not start with ``test_``); the results are in docs/proof.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    key: str
    family: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    # -- faults: the reliability contract ---------------------------------------------------
    Mutation("F1", "faults", "outbox deletes a row at the broker's PUBACK, before the hub's ack",
             "edge_agent/outbox/store.py",
             '"UPDATE outbox SET state = \'sent\', sent_at = ?, attempts = attempts + 1 WHERE seq = ?"',
             '"DELETE FROM outbox WHERE ? > 0 AND seq = ?"',
             ("tests/faults/test_kill_hub.py",
              "tests/edge_agent/test_agent_process.py::test_kill9_between_publish_and_ack_repeats_only_the_same_events")),
    Mutation("F2", "faults", "hub acks inside the transaction, before COMMIT (a 50 ms commit, as an fsync under load)",
             "hub/writer.py",
             "            result = self.ingestor.apply(self.repo, items)\n        self.ingestor.installed(result)",
             "            result = self.ingestor.apply(self.repo, items)\n"
             "            for ack in result.acks:\n                self._send_ack(ack)\n"
             "            result.acks.clear()\n            time.sleep(0.05)\n"
             "        self.ingestor.installed(result)",
             ("tests/faults/test_kill_hub.py::test_kill_9_hub_mid_ingest_loses_nothing_acknowledged",)),
    Mutation("F3", "faults", "a full disk is treated as a poison message (the behaviour before this branch)",
             "hub/writer.py",
             "    return isinstance(exc, sqlite3.OperationalError) and code is not None",
             "    return False and isinstance(exc, sqlite3.OperationalError) and code is not None",
             ("tests/faults/test_hub_disk_full.py",)),
    Mutation("F4", "faults", "outbox cap drops are not counted",
             "edge_agent/outbox/store.py",
             'self._bump("dropped.update", plan.dropped_updates)',
             'self._bump("dropped.update", 0)',
             ("tests/faults/test_outbox_cap.py",)),
    Mutation("F5", "faults", "outbox cap may drop a new or end (not only updates)",
             "edge_agent/outbox/store.py",
             "\" WHERE o.kind = 'update' ORDER BY o.seq\"",
             "\" WHERE o.kind != 'snapshot' ORDER BY o.seq\"",
             ("tests/faults/test_outbox_cap.py",)),
    Mutation("F6", "faults", "outbox cap drops the newest updates first",
             "edge_agent/outbox/store.py",
             "\" WHERE o.kind = 'update' ORDER BY o.seq\"",
             "\" WHERE o.kind = 'update' ORDER BY o.seq DESC\"",
             ("tests/faults/test_outbox_cap.py",)),
    Mutation("F7", "faults", "next_seq is saved in its own transaction after the rows (a crash between reuses a seq)",
             "edge_agent/outbox/store.py",
             '                    self._set_meta("next_seq", next_seq + len(rows))\n'
             "                    self._write_states(states or {}, now)\n",
             "                    self._write_states(states or {}, now)\n"
             "            if not plan.refuse:\n"
             "                with db.transaction(self._conn):\n"
             '                    self._set_meta("next_seq", next_seq + len(rows))\n',
             ("tests/faults/test_outbox_power_loss.py",)),
    Mutation("F8", "faults", "a device that answers again is never reported UP (no end event)",
             "edge_agent/modbus/poller.py",
             "            if life.event_id is None:  # came up with no open event: nothing to end",
             "            if True:  # came up with no open event: nothing to end",
             ("tests/faults/test_devices_drop_out.py",)),
    # -- security ---------------------------------------------------------------------------
    Mutation("S1", "security", "ACL patterns widened from the agent's own id (%u) to any agent (+)",
             "protocol/topics.py",
             'lines.append(f"pattern {access} {PREFIX}/%u/{channel}{tail}")',
             'lines.append(f"pattern readwrite {PREFIX}/+/{channel}{tail}")',
             ("tests/security/test_mqtt_acl.py", "tests/test_broker.py", "tests/fuzz/test_storm.py")),
    Mutation("S2", "security", "CSRF check disabled for cookie sessions",
             "hub/web/security.py",
             "and not csrf_ok(principal.csrf, await _csrf_given(request))):",
             "and False):",
             ("tests/web/test_web_auth.py",)),
    Mutation("S3", "security", "broker allows anonymous connections",
             "hub/broker.py", '"allow_anonymous false",', '"allow_anonymous true",',
             ("tests/test_broker.py::test_anonymous_and_wrong_password_are_refused",)),
    Mutation("S4", "security", "web request body limit raised to 64 MiB",
             "hub/web/app.py", "CLIENT_MAX_SIZE = 320 * 1024", "CLIENT_MAX_SIZE = 64 * 1024 * 1024",
             ("tests/security/test_web_inputs.py",)),
    Mutation("S5", "security", "static files are looked up by joining the URL's name to the folder",
             "hub/web/pages.py", '    path = _STATIC.get(request.match_info["name"])',
             '    path = STATIC_DIR / request.match_info["name"]',
             ("tests/security/test_web_inputs.py", "tests/web/test_web_pages.py")),
    Mutation("S6", "security", "signing in again keeps the previous session alive (fixation)",
             "hub/auth/accounts.py", "    if previous_sha256:\n        repo.delete_session(previous_sha256)",
             "    if False:\n        repo.delete_session(previous_sha256)",
             ("tests/web/test_web_auth.py::test_session_fixation_a_fresh_id_at_every_sign_in",)),
    # -- fuzz -------------------------------------------------------------------------------
    Mutation("Z1", "fuzz", "codec accepts messages over the size limits",
             "protocol/codec.py", "    if len(payload) > limit:\n        raise ProtocolError(\n"
             "            Refusal.TOO_LARGE,",
             "    if len(payload) > limit and False:\n        raise ProtocolError(\n"
             "            Refusal.TOO_LARGE,",
             ("tests/fuzz/test_codec_fuzz.py", "tests/protocol/test_codec.py")),
    Mutation("Z2", "fuzz", "codec raises a bare ValueError for a payload that is not JSON",
             "protocol/codec.py",
             'raise ProtocolError(Refusal.MALFORMED, "an events message is a JSON object or array")',
             'raise ValueError("an events message is a JSON object or array")',
             ("tests/fuzz/test_codec_fuzz.py",)),
    Mutation("Z3", "fuzz", "codec does not check the payload's agent id against the topic",
             "protocol/codec.py", "    if agent_id is not None and found != agent_id:",
             "    if agent_id is not None and found != agent_id and False:",
             ("tests/fuzz/test_codec_fuzz.py", "tests/fuzz/test_storm.py")),
    Mutation("Z4", "fuzz", "config loader lets PyYAML's ValueError through (no file:line)",
             "protocol/config.py", "        except (ValueError, TypeError, OverflowError) as exc:",
             "        except OverflowError as exc:",
             ("tests/fuzz/test_config_fuzz.py",)),
    Mutation("Z5", "fuzz", "Modbus decoder ignores the word order",
             "edge_agent/modbus/decode.py", "    if word_order == Order.LITTLE:\n        words.reverse()",
             "    if word_order == Order.LITTLE and False:\n        words.reverse()",
             ("tests/fuzz/test_modbus_decode_fuzz.py",)),
    Mutation("Z6", "fuzz", "Modbus range check lets NaN through",
             "edge_agent/modbus/decode.py", "    if not math.isfinite(value):", "    if False:",
             ("tests/fuzz/test_modbus_decode_fuzz.py",)),
]


def run(m: Mutation, timeout: float) -> tuple[str, list[str], float]:
    path = ROOT / m.path
    original = path.read_text()
    if not m.old or original.count(m.old) != 1:
        return "snippet not found exactly once: mutation is stale", [], 0.0
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}:/usr/sbin"}
    t0 = time.monotonic()
    try:
        path.write_text(original.replace(m.old, m.new))
        proc = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout",
             str(int(timeout)), *m.tests], cwd=ROOT, capture_output=True, text=True,
            timeout=timeout * 10, env=env)
    finally:
        path.write_text(original)
    failed = sorted({line.split()[1] for line in proc.stdout.splitlines()
                     if line.startswith(("FAILED ", "ERROR ")) and len(line.split()) > 1
                     and line.split()[1].startswith("tests/")})
    verdict = "caught" if proc.returncode != 0 and failed else "NOT CAUGHT"
    return verdict, failed, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("keys", nargs="*", help="mutation keys (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=float, default=120, help="per test, seconds")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.keys or m.key in args.keys]
    if args.list:
        for m in chosen:
            print(f"{m.key:4} {m.family:9} {m.what}  [{m.path}]")
        return 0
    print("| key | family | deliberate break | file | failing tests | verdict |")
    print("|---|---|---|---|---|---|")
    missed = 0
    for m in chosen:
        verdict, failed, secs = run(m, args.timeout)
        missed += verdict != "caught"
        shown = "<br>".join(f"`{f}`" for f in failed) or "—"
        print(f"| {m.key} | {m.family} | {m.what} | `{m.path}` | {shown} | {verdict} ({secs:.0f} s) |",
              flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
