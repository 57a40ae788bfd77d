"""The two kinds of model cityops has.

* :class:`StrictModel` for everything people write (agent configs, register maps, routing
  tables, plans): unknown keys are errors, so a typo never passes silently.
* :class:`WireModel` for messages on the wire: unknown fields are ignored, so a newer peer
  within the same major schema version can add fields; the version itself is checked
  strictly by the codec.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel", "WireModel"]


class StrictModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        str_strip_whitespace=True,
        frozen=False,
    )


class WireModel(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        allow_inf_nan=False,  # NaN and Infinity are refused in every message
        ser_json_timedelta="float",
    )
