"""The gazetteer: the district's road, community and landmark names → a grid and a point.

A citizen's app may send an Open311 request with only ``address_string`` (and a resident
may give only an address on the one-key report page). The hub places such a report by the
names in this file; an address that matches no entry is held for an operator to place
(hub/cases/screening.py), never refused.

The file (``gazetteer:`` in the hub config; an example in ``hub/examples/gazetteer.yaml``)::

    version: 1
    places:
      - name: Jiuting Road
        aliases: [Jiuting Rd, 九亭路]
        kind: road              # road | community | landmark
        grid: g-05              # the grid the report is placed in
        lat: 31.2150            # optional, both or neither: default a point inside the grid
        lon: 121.4150

Matching (:meth:`Gazetteer.find`) compares token runs: the address and every name are
normalised (Unicode NFKC, case folded, punctuation dropped), a Latin word or a number is
one token and a CJK character is one token; an entry matches when one of its names
appears in the address as a whole run of tokens ("Jiuting Rd 88" matches "Jiuting Rd";
"Jiutingroad" does not). The longest match wins; file order breaks ties.

Cross-checks (a grid that exists, a point inside its grid, a name used by one entry
only) raise :class:`ConfigError` with ``file:line:col``, like every hub config file.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from protocol.base import StrictModel
from protocol.config import Document, parse_yaml, validate_document
from protocol.errors import ConfigError, ConfigProblem

from .geo import Grid, GridIndex, read_config_text
from .linkage import grid_point

__all__ = ["Gazetteer", "GazetteerFile", "Match", "Place", "PlaceKind", "load_gazetteer",
           "normalise", "parse_gazetteer", "stand_in_point"]

Name = Annotated[str, Field(min_length=1, max_length=120)]

# A run of Latin letters/digits is one token; any other letter (CJK, kana, ...) is one
# token on its own, since those scripts do not separate words with spaces.
_TOKEN = re.compile(r"[0-9a-z]+|[^\W\d_a-z]")


class PlaceKind(StrEnum):
    ROAD = "road"
    COMMUNITY = "community"
    LANDMARK = "landmark"


class Place(StrictModel):
    """One named place."""

    name: Name = Field(description="the name people use (English or Chinese)")
    aliases: list[Name] = Field(default_factory=list, max_length=32,
                                description="other spellings, abbreviations, the other language")
    kind: PlaceKind = PlaceKind.ROAD
    grid: str = Field(description="grid the place lies in (grids file)")
    lat: float | None = Field(None, ge=-90, le=90, description="default: a point inside the grid")
    lon: float | None = Field(None, ge=-180, le=180)

    @model_validator(mode="after")
    def _both(self) -> Place:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self

    def names(self) -> list[str]:
        return [self.name, *self.aliases]


class GazetteerFile(StrictModel):
    version: Literal[1] = 1
    places: list[Place] = Field(default_factory=list, max_length=100_000)


def normalise(text: str) -> tuple[str, ...]:
    """The tokens of ``text`` as the gazetteer compares them."""
    return tuple(_TOKEN.findall(unicodedata.normalize("NFKC", text).casefold()))


@dataclass(frozen=True)
class Match:
    name: str  # the place's name (not the alias that matched)
    kind: str
    grid_id: str
    lat: float
    lon: float


class Gazetteer:
    """Names → places, ready for :meth:`find`."""

    def __init__(self, entries: list[tuple[tuple[str, ...], Match]]) -> None:
        # Longest names first, then file order: the first hit is the answer.
        self._entries = sorted(entries, key=lambda e: -len(e[0]))

    def __len__(self) -> int:
        return len({m.name for _, m in self._entries})

    def find(self, address: str) -> Match | None:
        """The place an address names, or None."""
        words = normalise(address[:400])
        if not words:
            return None
        for tokens, match in self._entries:
            n = len(tokens)
            for i in range(len(words) - n + 1):
                if words[i] == tokens[0] and words[i:i + n] == tokens:
                    return match
        return None


def _point(place: Place, grid: Grid) -> tuple[float, float]:
    if place.lat is not None and place.lon is not None:
        return place.lat, place.lon
    lat, lon = grid_point(grid)
    return round(lat, 6), round(lon, 6)


def build_gazetteer(data: GazetteerFile, doc: Document | None, grids: GridIndex) -> Gazetteer:
    """Cross-check the places against the grids and build the lookup."""

    def problem(path: tuple, message: str) -> ConfigProblem:
        if doc is not None:
            return doc.problem(path, message)
        return ConfigProblem("<gazetteer>", None, None, ".".join(map(str, path)), message)

    problems: list[ConfigProblem] = []
    seen: dict[tuple[str, ...], int] = {}
    entries: list[tuple[tuple[str, ...], Match]] = []
    for i, place in enumerate(data.places):
        names: list[tuple[str, ...]] = []
        for k, name in enumerate(place.names()):
            where = ("places", i, "name") if k == 0 else ("places", i, "aliases", k - 1)
            tokens = normalise(name)
            if not tokens:
                problems.append(problem(where, f"{name!r} has no letters or digits to match"))
            elif seen.setdefault(tokens, i) != i:
                problems.append(problem(where, f"{name!r} is also a name of places[{seen[tokens]}]; "
                                        "an address must point at one place"))
            elif tokens not in names:
                names.append(tokens)
        grid = grids.get(place.grid)
        if grid is None:
            problems.append(problem(("places", i, "grid"),
                                    f"unknown grid {place.grid!r}; it is not in the grids file"))
            continue
        if place.lat is not None and place.lon is not None and not grid.contains(place.lat, place.lon):
            problems.append(problem(("places", i, "lat"),
                                    f"the point ({place.lat}, {place.lon}) is not inside grid "
                                    f"{place.grid!r}; fix the point or the grid"))
            continue
        lat, lon = _point(place, grid)
        match = Match(place.name, place.kind.value, grid.grid_id, lat, lon)
        entries += [(tokens, match) for tokens in names]
    if problems:
        raise ConfigError(problems)
    return Gazetteer(entries)


def parse_gazetteer(text: str, filename: str, grids: GridIndex) -> Gazetteer:
    doc = parse_yaml(text, filename)
    return build_gazetteer(validate_document(GazetteerFile, doc), doc, grids)


def load_gazetteer(path: str | Path, grids: GridIndex) -> Gazetteer:
    return parse_gazetteer(read_config_text(path, "gazetteer"), str(path), grids)


def stand_in_point(grids: GridIndex) -> tuple[float, float]:
    """Where a report waiting to be placed is kept meanwhile (lat, lon): the centre of
    the grids' extent. It is never shown as the report's place (Open311 answers
    ``lat``/``long`` null) and never used to merge or route (hub/cases/merging.py)."""
    if not grids.grids:
        return 0.0, 0.0
    x0 = min(g.bbox[0] for g in grids.grids)
    y0 = min(g.bbox[1] for g in grids.grids)
    x1 = max(g.bbox[2] for g in grids.grids)
    y1 = max(g.bbox[3] for g in grids.grids)
    return round((y0 + y1) / 2, 6), round((x0 + x1) / 2, 6)
