"""The enrollment exchange between ``cityops-agent provision`` and the hub (HTTP JSON).

``POST {hub}/api/v1/enroll`` with :class:`EnrollRequest` → :class:`EnrollResponse`
(200) or a problem document (400 bad request, 401/403 token unknown, used or expired).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, Field

from .base import WireModel
from .ids import Id

__all__ = ["ENROLL_PATH", "EnrollRequest", "EnrollResponse", "MqttEndpoint"]

ENROLL_PATH = "/api/v1/enroll"


class EnrollRequest(WireModel):
    token: Annotated[str, Field(min_length=16, max_length=200)]
    hostname: Annotated[str, Field(max_length=200)] = ""
    agent_version: Annotated[str, Field(max_length=64)] = ""


class MqttEndpoint(WireModel):
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    ca_pem: Annotated[str, Field(max_length=20000)] | None = None


class EnrollResponse(WireModel):
    agent_id: Id
    username: Id
    password: Annotated[str, Field(min_length=16, max_length=200)]
    mqtt: MqttEndpoint
    grid_id: Id | None = None
    issued_at: AwareDatetime
