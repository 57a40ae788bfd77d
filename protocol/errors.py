"""The cityops exception tree.

Every error cityops raises on purpose derives from :class:`CityopsError`, carries the
context needed to act on it (topic, agent, field, file and line) and reads well on its own.

::

    CityopsError
    ├── ProtocolError            a message or topic that breaks protocol v1 (has .reason)
    │   └── TopicError           a topic outside the grammar, or an id unsafe in a topic
    ├── ConfigError              a config file or document people wrote is invalid
    │                            (.problems: every problem, each with file:line:col)
    └── (packages add their own under CityopsError: OutboxError, BrokerError, StoreError,
         ModelError, ProvisioningError, ... each in the module that raises it)

Expected errors are shown to people as one clear message (no traceback); the CLIs catch
``CityopsError`` at the top and print ``str(error)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CityopsError",
    "ConfigError",
    "ConfigProblem",
    "ProtocolError",
    "Refusal",
    "TopicError",
]


class CityopsError(Exception):
    """Base of every error cityops raises on purpose."""


class Refusal(StrEnum):
    """Why a message was refused. Stable codes: they are stored and shown to operators."""

    MALFORMED = "malformed"  # not JSON / not the expected shape at all
    TOO_LARGE = "too_large"  # over the protocol size limit
    UNKNOWN_SCHEMA = "unknown_schema"  # a schema name or major version we do not speak
    INVALID = "invalid"  # fields fail validation
    UNKNOWN_CATEGORY = "unknown_category"  # category/subcategory not in the taxonomy
    TOPIC_MISMATCH = "topic_mismatch"  # payload's agent_id differs from the topic's
    BAD_TOPIC = "bad_topic"  # topic outside the grammar
    CONFLICT = "conflict"  # same (agent, event, seq) seen with different content
    SEQ_OUT_OF_WINDOW = "seq_out_of_window"  # seq far above the agent's highest (hub/ingest/seqs.py)


class ProtocolError(CityopsError):
    """A message or topic that breaks protocol v1.

    ``reason`` is a :class:`Refusal` code, ``detail`` a human sentence; ``topic`` and
    ``field`` are filled when known.
    """

    def __init__(
        self,
        reason: Refusal,
        detail: str,
        *,
        topic: str | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = Refusal(reason)
        self.detail = detail
        self.topic = topic
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" on {self.topic}" if self.topic else ""
        field = f" (field {self.field})" if self.field else ""
        return f"{self.reason.value}{where}{field}: {self.detail}"


class TopicError(ProtocolError):
    """A topic outside the cityops grammar, or an id that is unsafe inside a topic."""

    def __init__(self, detail: str, *, topic: str | None = None) -> None:
        super().__init__(Refusal.BAD_TOPIC, detail, topic=topic)


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config document, located as precisely as we can."""

    file: str
    line: int | None  # 1-based
    column: int | None  # 1-based
    path: str  # dotted key path, e.g. "devices[2].register_map"
    message: str

    def __str__(self) -> str:
        place = self.file
        if self.line is not None:
            place += f":{self.line}"
            if self.column is not None:
                place += f":{self.column}"
        if self.path:
            return f"{place} {self.path}: {self.message}"
        return f"{place}: {self.message}"


class ConfigError(CityopsError):
    """A config document people wrote is invalid. Lists every problem at once."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        head = "1 problem" if len(self.problems) == 1 else f"{len(self.problems)} problems"
        lines = "\n".join(f"  {p}" for p in self.problems)
        return f"invalid configuration ({head}):\n{lines}"
