"""Load an agent config: the file, the register maps it names, every check, and the
desired-config overlays the hub pushes.

Every problem in the agent file and in the maps is reported at once, each as
``file:line:col key.path: message``. Relative paths in the file (``data_dir``, register
maps, credentials, TLS files, the outbox) are relative to the file's directory.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from protocol.config import Document, parse_yaml, validate_document
from protocol.errors import ConfigError, ConfigProblem

from . import checks
from .devices import DeviceConfig
from .model import AgentConfig
from .registers import RegisterMap

__all__ = [
    "ID_LISTS",
    "PROTECTED_KEYS",
    "LoadedConfig",
    "apply_overlay",
    "build_config",
    "load_agent_config",
    "load_register_map",
    "merge_patch",
]

# What a pushed config may not change: who the agent is and how it reaches the broker.
# Those stay with the file an installer wrote (a bad push must never cut the agent off).
PROTECTED_KEYS: tuple[tuple[str, ...], ...] = (("agent", "id"), ("mqtt",))


@dataclass(frozen=True)
class LoadedConfig:
    """A validated agent config with its register maps and where it came from."""

    config: AgentConfig
    maps: dict[str, RegisterMap]
    base_dir: Path
    data: dict[str, Any]  # the document that was validated (file merged with overlays)
    path: Path | None = None
    version: int | None = None  # desired-config version applied on top of the file
    file_data: dict[str, Any] = field(default_factory=dict)  # the file alone

    def resolve(self, value: str | Path) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def data_dir(self) -> Path:
        return self.resolve(self.config.agent.data_dir)

    @property
    def outbox_path(self) -> Path:
        if self.config.outbox.path:
            return self.resolve(self.config.outbox.path)
        return self.data_dir / "outbox.sqlite"

    @property
    def credentials_path(self) -> Path | None:
        f = self.config.mqtt.credentials_file
        return self.resolve(f) if f else None


def _read_document(path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), None, None, "", "file not found; check the path")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(path), None, None, "", f"cannot read file: {exc}")]) from None
    return parse_yaml(text, str(path))


def load_register_map(path: Path) -> tuple[RegisterMap, Document]:
    """Parse, validate and check one register map file. Raises ConfigError."""
    doc = _read_document(path)
    regmap = validate_document(RegisterMap, doc)
    problems = checks.check_register_map(regmap, doc)
    if problems:
        raise ConfigError(problems)
    return regmap, doc


def _load_maps(
    refs: Mapping[str, Any], base_dir: Path, doc: Document
) -> tuple[dict[str, RegisterMap], list[ConfigProblem]]:
    maps: dict[str, RegisterMap] = {}
    problems: list[ConfigProblem] = []
    for name, ref in refs.items():
        if not isinstance(ref, str):
            continue  # the model reports the type error
        path = Path(ref).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            problems.append(doc.problem(
                ("register_maps", name),
                f"register map file {str(path)!r} not found; check the path (relative to the config file)",
            ))
            continue
        try:
            maps[name], _ = load_register_map(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return maps, problems


def build_config(
    doc: Document, *, base_dir: Path, path: Path | None = None, version: int | None = None,
    file_data: dict[str, Any] | None = None,
) -> LoadedConfig:
    """Validate a parsed document as an agent config, load its maps, run every check."""
    problems: list[ConfigProblem] = []
    config: AgentConfig | None = None
    try:
        config = validate_document(AgentConfig, doc, context={"base_dir": base_dir})
    except ConfigError as exc:
        problems.extend(exc.problems)
    refs = doc.data.get("register_maps") if isinstance(doc.data, Mapping) else None
    maps, map_problems = _load_maps(refs if isinstance(refs, Mapping) else {}, base_dir, doc)
    problems.extend(map_problems)
    if config is not None:
        ctx = checks.CheckContext.of(config, maps, doc, base_dir)
    else:
        ctx = _partial_context(doc, maps, base_dir)
    problems.extend(p for p in checks.check_agent(ctx) if p not in problems)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    data = copy.deepcopy(doc.data)
    return LoadedConfig(
        config, maps, base_dir, data, path=path, version=version,
        file_data=copy.deepcopy(file_data if file_data is not None else doc.data),
    )


def _partial_context(doc: Document, maps: dict[str, RegisterMap], base_dir: Path) -> checks.CheckContext:
    """The parts of an invalid document that do validate, for the cross checks."""
    data = doc.data if isinstance(doc.data, Mapping) else {}
    devices = []
    items = data.get("devices")
    for i, item in enumerate(items if isinstance(items, list) else []):
        try:
            devices.append((i, DeviceConfig.model_validate(item)))
        except ValidationError:
            continue  # already reported by the full validation
    refs = data.get("register_maps")
    names = [str(k) for k in refs] if isinstance(refs, Mapping) else []
    return checks.CheckContext(None, devices, names, maps, doc, base_dir)


def load_agent_config(path: str | Path) -> LoadedConfig:
    """Read and fully check an agent config file. Raises ConfigError listing every problem."""
    path = Path(path)
    doc = _read_document(path)
    return build_config(doc, base_dir=path.resolve().parent, path=path)


def merge_patch(base: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7386): mappings merge key by key, ``null`` deletes a key,
    anything else (lists included) replaces. Neither argument is modified."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = copy.deepcopy(dict(base)) if isinstance(base, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _touches(patch: Mapping[str, Any], key: tuple[str, ...]) -> bool:
    cursor: Any = patch
    for part in key:
        if not isinstance(cursor, Mapping) or part not in cursor:
            return False
        cursor = cursor[part]
    return True


# Lists of entries with an ``id`` that an overlay may patch entry by entry.
ID_LISTS: tuple[str, ...] = ("devices", "cameras", "zones")


def _lists_by_id(
    base: Mapping[str, Any], overlay: Mapping[str, Any], name: str
) -> tuple[dict[str, Any], list[ConfigProblem]]:
    """An overlay whose ``devices``/``cameras``/``zones`` is a mapping ``{id: patch}`` (not
    a list, which replaces the whole list as RFC 7386 says) patches the entries with those
    ids, adds an entry for an id the file does not have, and removes one for ``null``: the
    hub can raise one camera's frame rate without knowing (or sending) its stream URL."""
    out = dict(overlay)
    problems: list[ConfigProblem] = []
    for key in ID_LISTS:
        patch = overlay.get(key)
        if not isinstance(patch, Mapping):
            continue
        items = base.get(key)
        entries = [copy.deepcopy(e) for e in (items if isinstance(items, list) else [])]
        index = {e.get("id"): i for i, e in enumerate(entries) if isinstance(e, Mapping)}
        removed: set[int] = set()
        for ident, change in patch.items():
            if change is not None and not isinstance(change, Mapping):
                problems.append(ConfigProblem(name, None, None, f"{key}.{ident}",
                                              f"expected a mapping of settings for {key[:-1]} {ident!r}, or null to remove it"))
            elif isinstance(change, Mapping) and change.get("id", ident) != ident:
                problems.append(ConfigProblem(name, None, None, f"{key}.{ident}.id",
                                              "an id cannot be changed by a patch; remove the entry and add a new one"))
            elif ident in index and change is None:
                removed.add(index[ident])
            elif ident in index:
                entries[index[ident]] = merge_patch(entries[index[ident]], change)
            elif change is not None:
                entries.append(merge_patch({"id": ident}, change))
        out[key] = [e for i, e in enumerate(entries) if i not in removed]
    return out, problems


def apply_overlay(loaded: LoadedConfig, overlay: Mapping[str, Any], version: int) -> LoadedConfig:
    """The file config with a desired-config overlay merged on top, fully checked.

    The overlay replaces any earlier overlay (it is merged onto the file, not onto the
    running config), so the hub always states the whole difference it wants. Devices,
    cameras and zones can be patched by id (``{"cameras": {"gate": {"fps": 5}}}``).
    Raises ConfigError (positions are key paths inside the overlay's result)."""
    name = f"desired config v{version}"
    refused = [
        ConfigProblem(name, None, None, ".".join(key),
                      "cannot be changed remotely; change it in the agent's config file")
        for key in PROTECTED_KEYS if _touches(overlay, key)
    ]
    if refused:
        raise ConfigError(refused)
    overlay, problems = _lists_by_id(loaded.file_data, overlay, name)
    if problems:
        raise ConfigError(problems)
    merged = merge_patch(loaded.file_data, overlay)
    doc = Document(name, merged, {})
    return build_config(
        doc, base_dir=loaded.base_dir, path=loaded.path, version=version, file_data=loaded.file_data
    )
