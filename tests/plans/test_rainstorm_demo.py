"""The ``rainstorm`` demo scenario loads the example vitals and rainstorm plan: as the
Jiuting underpass fills, the plan activates by itself and its board is pinned on the
status page a person watching the demo sees."""

from __future__ import annotations

import asyncio

from webtest import Client

from simulators.scenarios import load_scenario
from simulators.stack import SimStack, StackOptions


async def test_rainstorm_demo_shows_the_plan_activating_on_the_status_page():
    stack = SimStack(load_scenario("rainstorm"), StackOptions(time_scale=1440, telemetry_s=1.0,
                                                                 operator=False))
    await stack.start()
    client = Client(stack.hub)
    try:
        await client.login(stack.web_user, stack.web_password)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        page = ""
        while loop.time() < deadline:
            page = (await client.get("/")).text
            if 'data-plan="rainstorm"' in page:
                break
            await asyncio.sleep(0.5)
        assert 'data-plan="rainstorm"' in page, "the rainstorm plan never showed on the status page"
        assert "ACTIVE" in page and "Rainstorm response, Jiuting" in page
        assert 'data-vital-grid="g-04" data-level="normal"' not in page  # the map shows the warning
        assert 'data-indicator="water_level.jt1-underpass"' in page
    finally:
        await client.close()
        await stack.stop()
