"""Labels files: one class name per line, in the model's class-id order.

Blank lines and ``#`` comments are skipped. A line may also be ``ID NAME`` (the format of
many published labels files); ids must then run 0, 1, 2… without gaps. ``???`` marks an
unused id and is kept as a placeholder so the ids still line up.
"""

from __future__ import annotations

from pathlib import Path

from protocol.errors import CityopsError

__all__ = ["LabelsError", "bundled_class_map", "read_labels"]


class LabelsError(CityopsError):
    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(f"labels file {self.path}: {detail}")


def read_labels(path: Path | str) -> list[str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelsError(path, "not found; check detector.labels") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(path, f"cannot read it ({exc})") from None
    names: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        if head.isdigit() and rest.strip():
            if int(head) != len(names):
                raise LabelsError(path, f"line {lineno}: id {head} out of order (expected {len(names)})")
            line = rest.strip()
        if line in names and line != "???":
            raise LabelsError(path, f"line {lineno}: label {line!r} appears twice")
        names.append(line)
    if not names:
        raise LabelsError(path, "has no labels; write one class name per line")
    return names


def bundled_class_map() -> dict[str, str | None]:
    """What each class of the bundled model reports (taxonomy subcategory); ``vehicle`` is
    a problem only inside a zone (a fire lane), so it maps to nothing by default."""
    return {
        "water": "flood.road_waterlogging",
        "flame": "community_safety.fire",
        "smoke": "community_safety.smoke",
        "fallen_tree": "flood.fallen_tree",
        "garbage": "garbage.overflow",
        "vehicle": None,
    }
