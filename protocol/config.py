"""Load YAML that people write into a strict model, with errors that point at the place.

Every problem is reported at once as ``file:line:col key.path: message (got value)``,
1-based, with a hint towards the fix. Used by the agent configs, the register maps, the
hub's routing table, plans and any other YAML in cityops.

This module parses text it is given; callers read the files (``load_model_file`` is the
one convenience that does both).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError, ConfigProblem

__all__ = [
    "Document",
    "format_path",
    "load_model_file",
    "parse_yaml",
    "problems_from_validation_error",
    "read_yaml_file",
    "validate_document",
]

M = TypeVar("M", bound=BaseModel)

PathKey = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class Document:
    """Parsed YAML data and where each value stood in the text."""

    filename: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int]) -> tuple[int | None, int | None]:
        """1-based (line, column) of ``path``, or of its nearest located ancestor."""
        key = tuple(path)
        while True:
            if key in self.positions:
                return self.positions[key]
            if not key:
                return (None, None)
            key = key[:-1]

    def problem(self, path: Sequence[str | int], message: str) -> ConfigProblem:
        line, col = self.locate(path)
        return ConfigProblem(self.filename, line, col, format_path(path), message)


MAX_DEPTH = 64  # nesting of mappings and sequences; configs use fewer than ten


class _Loader(yaml.SafeLoader):
    """SafeLoader; we compose nodes ourselves to keep positions.

    Aliases (``*name``) are refused: a few hundred bytes of nested aliases expand to
    millions of nodes (a "billion laughs"), and every walk over the document, ours and
    pydantic's, expands them. Nesting deeper than :data:`MAX_DEPTH` is refused before
    the composer's recursion runs out of stack."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases are not allowed (*{event.anchor}): write the value out "
                "where it is needed", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A scalar that matches a YAML type but is not a valid value of it (2026-13-45,
        # !!int abc) raises a bare ValueError in PyYAML: give it the node's position.
        try:
            return super().construct_object(node, deep)
        except yaml.MarkedYAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}: {exc}",
                node.start_mark) from None


def _marked(exc: yaml.MarkedYAMLError, filename: str, what: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    col = mark.column + 1 if mark else None
    message = f"{what}: {exc.problem or exc}"
    if exc.context:
        message += f" ({exc.context})"
    return ConfigError([ConfigProblem(filename, line, col, "", message)])


def _walk(
    node: yaml.Node, path: PathKey, positions: dict[PathKey, tuple[int, int]],
    problems: list[ConfigProblem], filename: str,
) -> None:
    positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    ConfigProblem(
                        filename, line, key_node.start_mark.column + 1,
                        format_path((*path, key)),
                        f"duplicate key (first defined on line {seen[key]}); keep one",
                    )
                )
                continue
            seen[key] = line
            # A key's position is where the key is written, which is where people look.
            positions[(*path, key)] = (line, key_node.start_mark.column + 1)
            _walk(value_node, (*path, key), positions, problems, filename)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), positions, problems, filename)


def parse_yaml(text: str, filename: str = "<config>") -> Document:
    """Parse YAML text. Raises :class:`ConfigError` for syntax errors and duplicate keys."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise _marked(exc, filename, "YAML syntax error") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: no mark, a position
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise ConfigError([ConfigProblem(
            filename, line, col, "",
            f"character {char!r} (#x{ord(char):04x}) is not allowed in YAML; delete it or quote "
            "it as an escape sequence")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(filename, None, None, "", f"YAML error: {exc}")]) from None
    if node is None:
        return Document(filename, {}, {(): (1, 1)})  # an empty file: problems point at its start
    positions: dict[PathKey, tuple[int, int]] = {}
    problems: list[ConfigProblem] = []
    _walk(node, (), positions, problems, filename)
    if problems:
        raise ConfigError(problems)
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:  # an unknown tag, a value its type cannot hold
        raise _marked(exc, filename, "YAML value error") from None
    except yaml.YAMLError as exc:  # pragma: no cover - compose already succeeded
        raise ConfigError([ConfigProblem(filename, None, None, "", f"YAML error: {exc}")]) from None
    return Document(filename, data, positions)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _data_path(loc: Iterable[str | int], data: Any) -> PathKey:
    """Map a pydantic error location onto the document's path.

    Pydantic inserts union tags and model names into ``loc`` (e.g. ``devices.0.tcp.host``);
    keep only the parts that exist in the data, so the position lookup lands right.
    """
    path: list[str | int] = []
    cursor = data
    for part in loc:
        if isinstance(cursor, Mapping) and part in cursor or isinstance(cursor, list) and isinstance(part, int) and 0 <= part < len(cursor):
            path.append(part)
            cursor = cursor[part]
        elif isinstance(cursor, Mapping) and isinstance(part, str) and not _is_tag(part):
            path.append(part)  # a missing or extra key: point at the parent, name the key
            cursor = None
        # else: a union tag or function-validator name; skip it
    return tuple(path)


def _is_tag(part: str) -> bool:
    return part.startswith(("function-", "tagged-union", "union[")) or "[" in part


def _fix_hint(err: Mapping[str, Any], model: type[BaseModel] | None, data_path: PathKey) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden" and data_path:
        bad = str(data_path[-1])
        allowed = _allowed_keys(model, data_path[:-1]) if model else []
        close = difflib.get_close_matches(bad, allowed, n=1)
        if close:
            return f"; did you mean '{close[0]}'?"
        if allowed:
            return f"; allowed keys here: {', '.join(sorted(allowed))}"
        return "; remove it"
    if kind == "missing":
        return "; add it"
    return ""


def _allowed_keys(model: type[BaseModel], parent: PathKey) -> list[str]:
    """Field names (and aliases) of the model that sits at ``parent``, when we can find it."""
    current: Any = model
    for part in parent:
        if isinstance(part, int):
            current = _item_model(current)
        else:
            fields = getattr(current, "model_fields", None)
            if not fields:
                return []
            info = next(
                (f for n, f in fields.items() if part in (n, f.alias)), None
            )
            if info is None:
                return []
            current = _unwrap(info.annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    if not fields:
        return []
    return [f.alias or n for n, f in fields.items()]


def _unwrap(annotation: Any) -> Any:
    """The model inside Optional[...], list[...], dict[str, ...] or a plain model."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _item_model(model: Any) -> Any:
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def problems_from_validation_error(
    exc: ValidationError, doc: Document, model: type[BaseModel] | None = None
) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        path = _data_path(err.get("loc", ()), doc.data)
        message = err.get("msg", "invalid value")
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        kind = err.get("type", "")
        if kind not in ("missing", "extra_forbidden") and "input" in err:
            message += f" (got {_short(err['input'])})"
        message += _fix_hint(err, model, path)
        line, col = doc.locate(path)
        problems.append(ConfigProblem(doc.filename, line, col, format_path(path), message))
    # One problem per place is enough; keep the order pydantic gave.
    unique: dict[tuple[str, str], ConfigProblem] = {}
    for p in problems:
        unique.setdefault((p.path, p.message), p)
    return list(unique.values())


def validate_document(
    model: type[M], doc: Document, *, context: dict[str, Any] | None = None
) -> M:
    """Validate a parsed document against ``model``; raise :class:`ConfigError` listing
    every problem with its position."""
    if not isinstance(doc.data, Mapping):
        raise ConfigError(
            [doc.problem((), f"expected a mapping of keys at the top level, got {type(doc.data).__name__}")]
        )
    try:
        return model.model_validate(doc.data, context=context)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation_error(exc, doc, model)) from None


def read_yaml_file(path: str | Path) -> Document:
    """Read and parse one YAML file, keeping positions; a missing or unreadable file is a
    :class:`ConfigError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [ConfigProblem(str(path), None, None, "", "file not found; check the path")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [ConfigProblem(str(path), None, None, "", f"cannot read file: {exc}")]
        ) from None
    return parse_yaml(text, str(path))


def load_model_file(
    path: str | Path, model: type[M], *, context: dict[str, Any] | None = None
) -> M:
    """Read, parse and validate one YAML file."""
    return validate_document(model, read_yaml_file(path), context=context)
