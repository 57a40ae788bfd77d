"""The elderly-care loop end to end, nothing stood in: a simulated water meter (pymodbus)
→ the real agent (no-use rule with tiers, outbox, MQTT) → the hub's managed Mosquitto →
the hub (case, care registry, notification outbox) → a real SMTP server and HTTP robot
and SMS receivers; an operator's acceptance → the retained care state → the agent stops
escalating and says so → water use resumes → the case closes on its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from caretest import (
    AGENT,
    DOCTOR_PHONE,
    FAMILY,
    MAPS,
    agent_config_file,
    care_setup,
)
from hubtest import await_for

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config, load_register_map
from hub.app import Hub
from protocol.clock import FakeClock
from protocol.ids import new_secret
from simulators.modbus import ModbusSimServer, SimulatedDevice, WaterMeterModel


def enrol(hub: Hub) -> tuple[str, str]:
    password = new_secret("mqp")
    hub.broker_auth.set_user(AGENT, password)
    hub.broker_auth.reload()
    return AGENT, password


async def actions(hub: Hub, case_id: int) -> list[str]:
    return [a.action for a in await hub.read(lambda r: r.audit_for_case(case_id))]


async def alarm(hub: Hub, case_id: int):
    [a] = await hub.read(lambda r: r.care_alarms_for_case(case_id))
    return a


async def case_of_meter(hub: Hub):
    cases = await hub.read(lambda r: r.list_cases(category="elderly_care"))
    return cases[0] if cases else None


async def sent(hub: Hub, case_id: int, channel: str) -> list:
    rows = await hub.read(lambda r: r.deliveries_for_case(case_id))
    return [d for d in rows if d.channel == channel and d.state == "sent"]


async def test_tiers_notify_then_the_operators_acceptance_stops_them_and_water_use_closes(
        tmp_path, clock, smtp, http):
    agent_clock = FakeClock(datetime.now(UTC))
    model = WaterMeterModel(flow_m3h=0.0, volume_m3=40.0)
    meter = SimulatedDevice(1, load_register_map(MAPS / "water_meter.yaml")[0], model=model,
                            clock=agent_clock)
    hub = Hub(care_setup(tmp_path, smtp, http), clock=clock, run_scheduler=False)
    await hub.start()
    try:
        async with ModbusSimServer([meter]) as server:
            path = agent_config_file(tmp_path, hub.broker_port, server.port, *enrol(hub))
            app = AgentApp(load_agent_config(path), clock=agent_clock)
            stop = asyncio.Event()
            task = asyncio.create_task(app.run(stop))
            try:
                await await_for(lambda: meter.requests > 3, what="the agent polling the meter")
                # 1. No water for 18 s of the agent's clock: the alarm, tier 1 → the family.
                agent_clock.advance(20)
                case = await await_for(lambda: case_of_meter(hub), what="the care case")
                # auto_accept: false: the screen holds the case for an operator
                assert case.state == "new" and case.queue == "operator"
                assert [r[0] for r in case.screen_reasons] == ["needs_operator"]
                await await_for(lambda: smtp.messages, timeout=20, what="tier 1 email")
                [mail] = smtp.messages
                assert mail["to"] == [FAMILY] and "tier 1" in mail["subject"]
                assert "1-101" in mail["body"] and f"Case {case.id}" in mail["body"]
                await await_for(lambda: sent(hub, case.id, "email"), what="the email settled as sent")
                # 2. Nobody acknowledged: half a minute later, tier 2 → the grid worker's robot.
                agent_clock.advance(31)
                await await_for(lambda: http.robots, timeout=20, what="tier 2 robot message")
                [robot] = http.robots
                assert robot["vendor"] == "wecom" and "tier 2" in robot["text"]
                # 3. An operator accepts the case: the agent is told and confirms.
                await hub.accept(case.id, actor="op-li")
                confirmed = await await_for(
                    lambda: _confirmed(hub, case.id), timeout=20, what="the agent's confirmation")
                assert confirmed.acknowledged_by == "op-li" and confirmed.tier == 2
                # 4. Past tier 3's time: no tier 3 (the doctor is not called).
                polls = meter.requests
                agent_clock.advance(60)
                await await_for(lambda: meter.requests > polls + 10, what="polls past tier 3")
                await await_for(lambda: app.outbox.depth == 0, what="the outbox drained")
                a = await alarm(hub, case.id)
                assert a.escalations_after_ack == 0 and a.tier == 2 and a.tier_notifications == 2
                assert http.sms == [] and not [d for d in await hub.read(
                    lambda r: r.deliveries_for_case(case.id)) if d.channel == "sms"]
                # 5. Water is used again: the alarm ends and the case closes on its own.
                model.flow_m3h = 0.8
                agent_clock.advance(10)
                await await_for(lambda: _ended(hub, case.id), timeout=20, what="the alarm's end")
                report = await hub.tick()
                assert report.closed == [case.id]
            finally:
                stop.set()
                await asyncio.wait_for(task, 15)
        final = await hub.read(lambda r: r.get_case(case.id))
        assert final.state == "closed" and final.closed_by == "auto_sensor"
        audit = await hub.read(lambda r: r.audit_for_case(case.id))
        steps = [a.action for a in audit]
        for step in ("care_notified", "care_acknowledged", "care_ack_confirmed",
                     "care_resident_ok", "closed"):
            assert step in steps, (step, steps)
        assert steps.index("care_acknowledged") < steps.index("care_ack_confirmed") \
            < steps.index("care_resident_ok") < steps.index("closed")
        notified = [a for a in audit if a.action == "care_notified"]
        assert [a.data["tier"] for a in notified] == [1, 2]
        assert "Ms Wang" in notified[0].detail and "Li Ming" in notified[1].detail
        [acked] = [a for a in audit if a.action == "care_acknowledged"]
        assert acked.actor == "op-li" and "op-li" in acked.detail
        [confirmed_row] = [a for a in audit if a.action == "care_ack_confirmed"]
        assert "stopped at tier 2" in confirmed_row.detail
        [closed] = [a for a in audit if a.action == "closed"]
        assert "water use resumed" in closed.detail
        assert "care_escalation_after_ack" not in steps
        counts = await hub.read(lambda r: r.care_counts())
        assert counts["tier_notifications"] == 2 and counts["escalations_after_ack"] == 0
        assert counts["confirmed"] == 1 and counts["ended"] == 1
        assert DOCTOR_PHONE not in str(http.sms)
    finally:
        await hub.stop()


async def _confirmed(hub: Hub, case_id: int):
    a = await alarm(hub, case_id)
    return a if a.confirmed_at is not None else None


async def _ended(hub: Hub, case_id: int):
    a = await alarm(hub, case_id)
    return a if a.ended_at is not None else None


async def test_the_acknowledgement_reaches_an_agent_that_was_offline(tmp_path, clock, smtp, http):
    """Accepted while the agent is down: the retained care state is there when it comes
    back, it stops escalating (no tier 3) and confirms; applying it again adds nothing."""
    agent_clock = FakeClock(datetime.now(UTC))
    meter = SimulatedDevice(1, load_register_map(MAPS / "water_meter.yaml")[0],
                            model=WaterMeterModel(flow_m3h=0.0, volume_m3=40.0), clock=agent_clock)
    hub = Hub(care_setup(tmp_path, smtp, http), clock=clock, run_scheduler=False)
    await hub.start()
    try:
        async with ModbusSimServer([meter]) as server:
            path = agent_config_file(tmp_path, hub.broker_port, server.port, *enrol(hub))

            async def run_agent(until_what, cond):
                app = AgentApp(load_agent_config(path), clock=agent_clock)
                stop = asyncio.Event()
                task = asyncio.create_task(app.run(stop))
                try:
                    await await_for(lambda: meter.requests > 3, what="polling")
                    await until_what(app)
                    await await_for(cond, timeout=20, what="the agent's part")
                finally:
                    stop.set()
                    await asyncio.wait_for(task, 15)
                return app

            async def open_alarm(app):
                agent_clock.advance(20)
                await await_for(lambda: case_of_meter(hub), what="the care case")

            await run_agent(open_alarm, lambda: smtp.messages)
            case = await case_of_meter(hub)
            await hub.accept(case.id, actor="op-wu")  # the agent is offline now
            assert "care_acknowledged" in await actions(hub, case.id)

            async def past_tier_3(app):
                polls = meter.requests
                agent_clock.advance(70)
                await await_for(lambda: meter.requests > polls + 10, what="polls past tier 3")

            app = await run_agent(past_tier_3, lambda: _confirmed(hub, case.id))
            # The same state once more changes nothing (idempotent).
            assert app.care is not None and [a.event_id for a in app.care.acknowledged]
        a = await alarm(hub, case.id)
        assert a.acknowledged_by == "op-wu" and a.escalations_after_ack == 0
        assert a.tier == 1 and a.tiers_seen == [1]  # tiers 2 and 3 were never reached
        steps = await actions(hub, case.id)
        assert steps.count("care_ack_confirmed") == 1 and steps.count("care_notified") == 1
        assert http.robots == [] and http.sms == []
    finally:
        await hub.stop()
