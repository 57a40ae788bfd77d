"""The category taxonomy: categories, subcategories and departments, with defaults.

The data lives in ``taxonomy.yaml`` beside this module (shipped with the package). Codes
are stable strings; a subcategory code starts with its category code and a dot.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Annotated

from pydantic import Field, PrivateAttr, model_validator

from .base import StrictModel
from .config import parse_yaml, validate_document

__all__ = [
    "CloseMode",
    "Evidence",
    "Names",
    "Source",
    "Subcategory",
    "Category",
    "Taxonomy",
    "taxonomy",
]

Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$", max_length=64)]


class Source(StrEnum):
    CAMERA = "camera"
    SENSOR = "sensor"
    LINKAGE = "linkage"
    REPORT = "report"
    SYSTEM = "system"


class Evidence(StrEnum):
    SNAPSHOT = "snapshot"
    BBOX = "bbox"
    READING = "reading"


class CloseMode(StrEnum):
    SENSOR_CLEAR = "sensor_clear"
    PHOTO = "photo"
    NONE = "none"


class Names(StrictModel):
    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)


class Merge(StrictModel):
    radius_m: float = Field(ge=0, description="events within this distance join an open case")
    window_min: float = Field(ge=0, description="...and within this many minutes of its last event")


class Subcategory(StrictModel):
    code: Code
    name: Names
    source: Source
    deadline_min: int = Field(gt=0, description="default minutes from dispatch to fix")
    department: str
    evidence: list[Evidence] = Field(default_factory=list)
    min_confidence: float = Field(ge=0, le=1)
    merge: Merge
    close: CloseMode
    retired: bool = False

    @property
    def category(self) -> str:
        return self.code.split(".", 1)[0]


class Category(StrictModel):
    code: Code
    name: Names
    subcategories: list[Subcategory] = Field(min_length=1)

    @model_validator(mode="after")
    def _sub_codes_belong(self) -> Category:
        for sub in self.subcategories:
            if not sub.code.startswith(self.code + "."):
                raise ValueError(
                    f"subcategory {sub.code!r} must start with its category code '{self.code}.'"
                )
        return self


class Taxonomy(StrictModel):
    version: int
    departments: dict[str, Names]
    categories: list[Category] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        seen: set[str] = set()
        for cat in self.categories:
            for code in [cat.code, *(s.code for s in cat.subcategories)]:
                if code in seen:
                    raise ValueError(f"code {code!r} appears twice")
                seen.add(code)
            for sub in cat.subcategories:
                if sub.department not in self.departments:
                    raise ValueError(
                        f"{sub.code}: department {sub.department!r} is not in departments"
                    )
        return self

    _sub_index: dict[str, Subcategory] = PrivateAttr(default_factory=dict)
    _cat_index: dict[str, Category] = PrivateAttr(default_factory=dict)

    def model_post_init(self, __context: object) -> None:
        self._cat_index = {c.code: c for c in self.categories}
        self._sub_index = {s.code: s for c in self.categories for s in c.subcategories}

    # -- lookups -------------------------------------------------------------------
    def subcategory(self, code: str) -> Subcategory:
        """The subcategory with this code; KeyError when unknown."""
        return self._sub_index[code]

    def category(self, code: str) -> Category:
        """The category with this code; KeyError when unknown."""
        return self._cat_index[code]

    def is_valid_pair(self, category: str, subcategory: str) -> bool:
        sub = self._sub_index.get(subcategory)
        return sub is not None and sub.category == category and not sub.retired

    def subcategories(self) -> list[Subcategory]:
        return list(self._sub_index.values())


@cache
def taxonomy() -> Taxonomy:
    """The shipped taxonomy (parsed once)."""
    text = resources.files(__package__).joinpath("taxonomy.yaml").read_text(encoding="utf-8")
    return validate_document(Taxonomy, parse_yaml(text, "protocol/taxonomy.yaml"))
