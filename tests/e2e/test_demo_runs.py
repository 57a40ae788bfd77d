"""``cityops-sim demo``: the whole system on one machine, scored against the ground truth.

* the first slice (issue 3), as a person runs it: ``cityops-sim demo --json`` as a child
  process; its status page shows a case while it runs, and the JSON at the end says
  every published event was stored once and nothing was lost;
* ``mixed-day`` at a high time scale (issue 6): every injected sensor problem detected,
  no lost event, no duplicate case, no false case; the people the hub told (issue 19) got
  their messages at the run's local SMTP server and robot stand-ins: the family's email
  and the grid worker's WeCom robot message of each call button, every delivery the hub
  queued delivered, and no tier escalated after a person acknowledged the alarm;
* ``elderly-care`` with the mail server refusing every address (``--failing-channel
  email``): the family's emails end as dead deliveries with the server's 550 as reason,
  while the grid worker's robot still gets the alarm.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import sys
import urllib.parse
import urllib.request

from simulators.demo import format_summary, run_demo
from simulators.progress import Progress
from simulators.scenarios import load_scenario
from simulators.stack import SimStack, StackOptions

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


class _Browser:
    """A person at the status page: cookies, and the sign-in form the demo told them about."""

    def __init__(self) -> None:
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, url: str) -> str:
        with self.opener.open(url, timeout=5) as r:  # loopback URL the demo printed
            return r.read().decode()

    def sign_in(self, base: str, user: str, password: str) -> None:
        form = self.get(base + "login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        body = urllib.parse.urlencode({"username": user, "password": password, "csrf_token": token,
                                       "next": "/"}).encode()
        with self.opener.open(base + "login", data=body, timeout=5) as r:
            assert 'action="/login"' not in r.read().decode(), "the demo's sign-in was refused"


async def test_demo_command_shows_a_case_and_stores_every_event_once():
    """Issue 3's check, kept as short as its assertions allow: the default scenario's first
    case (a call-button press) reaches the hub about 7 s into the run."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from simulators.cli import main; sys.exit(main())",
        "demo", "--duration", "14", "--json", "--progress-every", "2", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        url = login = None
        while login is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, "the demo ended before printing its status page"
            if "status page http" in line:
                url = line.split("status page ", 1)[1].split()[0]
            if "sign in as " in line:
                login = line.split("sign in as ", 1)[1].split()
                break
        browser = _Browser()
        await asyncio.to_thread(browser.sign_in, url, login[0], login[2])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        page = cases = ""
        while loop.time() < deadline:
            page = await asyncio.to_thread(browser.get, url)
            cases = await asyncio.to_thread(browser.get, url + "api/v1/cases")
            if "elderly_care" in page and json.loads(cases).get("cases"):
                break
            await asyncio.sleep(0.5)
        assert "elderly_care" in page, "no case on the status page"
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-3000:]
    lines = out.decode().strip().splitlines()
    assert len(lines) == 1, "--json prints one JSON object"
    summary = json.loads(lines[0])
    assert summary["events_stored"] == summary["events_published"] > 0
    assert summary["events_acked"] == summary["events_published"]
    assert summary["cases_opened"] >= 1
    assert summary["lost"] == 0 and summary["duplicates"] == 0


async def test_mixed_day_at_high_speed_detects_every_sensor_problem(tmp_path):
    loaded = load_scenario("mixed-day")
    scale = 2880.0  # the simulated day in 30 s
    stack = SimStack(loaded, StackOptions(time_scale=scale, work_dir=tmp_path / "run"))
    summary = await run_demo(stack, duration=loaded.scenario.duration / scale,
                             progress=Progress("mixed-day", quiet=True))
    detail = json.dumps(summary["problems"], indent=1)
    assert summary["problems_injected"] == 9, detail  # every incident of the file, none undetectable
    assert summary["problems_detected"] == summary["problems_injected"], detail
    assert summary["missed"] == 0 and summary["problems_pending"] == 0
    assert summary["lost"] == summary["events_lost"] == 0
    assert summary["duplicates"] == 0 and summary["duplicate_cases"] == 0
    assert summary["false_cases"] == 0, summary["false_case_ids"]
    assert summary["events_stored"] == summary["events_published"] == summary["events_acked"] > 0
    assert summary["cases_dispatched"] == summary["cases_opened"] >= 9
    # a cancelled call button closes its case by itself too (close: sensor_clear)
    assert summary["closed_automatically"] >= 6
    assert summary["time_to_dispatch_s"]["n"] == 9
    assert summary["run"]["drained"]
    # the departments worked their cases through the handler API (on the scenario's clock)
    handlers = summary["handlers"]
    assert handlers["cases_seen"] == summary["cases_dispatched"], handlers
    assert handlers["accepted"] >= 1 and handlers["errors"] == 0, handlers
    # everyone the hub told got it (issue 19): nothing dead, nothing left pending
    notes, care = summary["notifications"], summary["care"]
    assert notes["delivered"] == notes["queued"] > 0 and notes["pending"] == 0, notes
    assert notes["failed"] == 0 and notes["dead"] == [], notes
    assert care["escalations_after_ack"] == 0 and care["tier_notifications"] >= 2, care
    got = summary["notifications_received"]
    assert got["received"] == notes["queued"] and got["refused"] == [], got["by_channel"]
    care_msgs = {(m["channel"], m["to"]) for m in got["messages"] if "care alarm" in m["subject"]}
    # each call button's tier 1 tells the flat's family by email and the grid's worker robot
    assert {("email", "family-call-1-101@example.org"), ("wecom", "grid-g-01"),
            ("email", "family-call-2-301@example.org"), ("wecom", "grid-g-02")} <= care_msgs, care_msgs
    text = format_summary(summary)
    assert "notifications received:" in text and "escalations after acknowledgement 0" in text, text


async def test_fire_scenario_cameras_are_detected_and_worked(tmp_path):
    """Cameras in a scenario (issue 6): the camera simulator serves the fire's smoke and
    flames on the scenario's timeline, the agent's camera component reports them, the
    scorecard counts them against the ground truth, and the fire brigade resolves the
    photo cases with after-photos of the camera's own scene."""
    loaded = load_scenario("fire")
    scale = loaded.scenario.time_scale  # the camera plays in real time: keep the file's pace
    stack = SimStack(loaded, StackOptions(time_scale=scale, work_dir=tmp_path / "run"))
    horizon_s = 3 * 3600  # through the fire, before the afternoon's burnt toast
    summary = await run_demo(stack, duration=horizon_s / scale, progress=Progress("fire", quiet=True))
    detail = json.dumps(summary["problems"], indent=1)
    camera = {r["subcategory"]: r for r in summary["problems"] if "/lane88-cam/" in r["id"]}
    assert set(camera) == {"community_safety.smoke", "community_safety.fire"}, detail
    assert all(r["status"] == "detected" and r.get("cases") for r in camera.values()), detail
    assert summary["problems_detected"] == summary["problems_injected"] == 6, detail
    assert summary["lost"] == 0 and summary["duplicates"] == 0 and summary["duplicate_cases"] == 0
    assert summary["false_cases"] == 0, summary["false_case_ids"]
    assert summary["events_stored"] == summary["events_published"]
    # Each camera event's clip (smoke, fire) is on the hub, the ones still recording at the
    # horizon cut short and encoded on the way out.
    assert summary["clips_stored"] >= 2, summary["clips_stored"]
    # The scripted live view: frames from the camera, at most 1 a second and 50 kB, the
    # first within 2 s, then the view stopped on its own after its 5 s.
    view = summary["live_view"]
    assert view["stopped"] == "time" and 3 <= summary["live_frames"] == view["frames"] <= 6, view
    assert view["first_frame_s"] < 2.0 and view["largest_bytes"] <= 50_000, view
    assert "live     " in format_summary(summary)
    truth_log = [json.loads(x) for x in (tmp_path / "run" / "cameras-truth.jsonl").read_text().splitlines()]
    assert {(r["label"], r["event"]) for r in truth_log} >= {("smoke", "appear"), ("flame", "appear")}
    handled = [json.loads(x) for x in (tmp_path / "run" / "handlers.jsonl").read_text().splitlines()]
    photos = [r for r in handled if r["action"] == "resolved" and r.get("scene") == "camera"]
    assert photos and all(r["department"] == "fire_brigade" for r in photos), handled


async def test_a_failing_channel_ends_in_dead_notifications_with_reasons(tmp_path):
    """The mail server answers 550 to every address: the call button's family email is
    dead with that reason (no retry can help), the grid worker's robot still hears, and
    nothing is left pending."""
    loaded = load_scenario("elderly-care")
    scale = 1440.0
    horizon_s = 4 * 3600  # past the 09:30 call-button press (3h30m in)
    stack = SimStack(loaded, StackOptions(time_scale=scale, work_dir=tmp_path / "run", failing_channel="email"))
    summary = await run_demo(stack, duration=horizon_s / scale, progress=Progress("elderly-care", quiet=True))
    notes = summary["notifications"]
    assert notes["pending"] == 0 and notes["failed"] >= 1, notes
    assert notes["delivered"] + notes["failed"] == notes["queued"], notes
    dead = {(d["channel"], d["target"]): d for d in notes["dead"]}
    family = dead[("email", "family-call-1-102@example.org")]
    assert family["kind"] == "care_tier" and family["attempts"] == 1, family
    assert "550" in family["reason"] and "no such mailbox" in family["reason"], family
    assert all(d["channel"] == "email" for d in notes["dead"]), notes["dead"]
    got = summary["notifications_received"]
    assert got["failing_channel"] == "email" and {r["channel"] for r in got["refused"]} == {"email"}
    assert any(m["channel"] == "wecom" and m["to"] == "grid-g-01" and "care alarm" in m["subject"]
               for m in got["messages"]), got["messages"]
    assert summary["care"]["tier_notifications"] >= 1 and summary["care"]["escalations_after_ack"] == 0
    text = format_summary(summary)
    assert "dead   care_tier by email to family-call-1-102@example.org: PermanentError: SMTP 550" in text, text
