"""Pytest fixtures for the real notification peers of ``peers.py``: a local SMTP server
(STARTTLS, AUTH) and one HTTP receiver for webhooks, robots and the SMS gateway. The root
conftest registers this module as a plugin, so every test can ask for them."""

from __future__ import annotations

import pytest
from peers import HttpSink, SmtpSink


@pytest.fixture
def smtp(tmp_path):
    sink = SmtpSink(tmp_path).start()
    yield sink
    sink.stop()


@pytest.fixture
async def http():
    sink = await HttpSink().start()
    yield sink
    if sink.hold is not None:  # a test that held the receiver's answers lets them go
        sink.hold.set()
    await sink.stop()
