"""Load a scenario: a shipped one by name (``mixed-day``) or a YAML file by path.

Every problem is reported at once as ``file:line:col key.path: message``: the model
(:mod:`.model`), the cross checks (:mod:`.checks`), and the agent config each site
becomes, validated by the agent's own loader with positions mapped back into the
scenario file (a rule that names a register its device lacks is found here, at the
rule's line, not later in a generated file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_agent.config import load_register_map
from edge_agent.config.loader import build_config
from edge_agent.config.registers import RegisterMap
from hub.geo import GridIndex, load_grids
from protocol.config import Document, read_yaml_file, validate_document
from protocol.errors import ConfigError, ConfigProblem

from .agents import AgentWiring, agent_config_data
from .checks import check_scenario
from .devices import DEFAULT_MAPS
from .model import Scenario

__all__ = ["EXAMPLE_GRIDS", "SCENARIO_DIR", "LoadedScenario", "load_scenario", "scenario_names"]

SCENARIO_DIR = Path(__file__).resolve().parent
EXAMPLE_GRIDS = SCENARIO_DIR.parents[1] / "hub" / "examples" / "grids.geojson"


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    doc: Document
    path: Path


def scenario_names() -> list[str]:
    """The shipped scenarios (``simulators/scenarios/*.yaml``)."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def _resolve(ref: str | Path) -> Path:
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = SCENARIO_DIR / f"{ref}.yaml"
    if shipped.exists():
        return shipped
    raise ConfigError([ConfigProblem(str(ref), None, None, "",
                                     f"no scenario named {str(ref)!r}; shipped: {', '.join(scenario_names())} "
                                     "(or give a path to a .yaml file)")])


def load_scenario(ref: str | Path, *, grids: Path | None = EXAMPLE_GRIDS,
                  maps_dir: Path = DEFAULT_MAPS) -> LoadedScenario:
    """Read and check a scenario. ``grids``: the hub's grids file the sites must lie in
    (``None``: do not check places)."""
    path = _resolve(ref)
    doc = read_yaml_file(path)
    scenario = validate_document(Scenario, doc)
    index: GridIndex | None = load_grids(grids) if grids is not None else None
    maps: dict[str, RegisterMap] = {}
    for model in sorted({d.model for s in scenario.sites for d in s.devices}):
        maps[model] = load_register_map(maps_dir / f"{model}.yaml")[0]
    problems = check_scenario(scenario, doc, index, maps, grids)
    for s in range(len(scenario.sites)):
        problems += [p for p in _agent_problems(scenario, doc, s, maps_dir) if p not in problems]
    if problems:
        raise ConfigError(problems)
    return LoadedScenario(scenario, doc, path)


def _agent_problems(scenario: Scenario, doc: Document, s: int, maps_dir: Path) -> list[ConfigProblem]:
    """Validate site ``s`` as the agent config it becomes, positions in the scenario file."""
    site = scenario.sites[s]
    data = agent_config_data(site, scenario, scenario.time_scale, AgentWiring(maps_dir=maps_dir))
    prefix = ("sites", s)
    positions = {}
    for key, pos in doc.positions.items():
        if key[:2] == prefix and len(key) > 2 and key[2] == "devices":
            positions[key[2:]] = pos
    site_pos = doc.positions.get(prefix, (None, None))
    for top in ("agent", "mqtt", "outbox", "telemetry", "logging", "register_maps"):
        positions[(top,)] = site_pos
    positions[()] = site_pos
    agent_doc = Document(doc.filename, data, positions)
    try:
        build_config(agent_doc, base_dir=maps_dir)
    except ConfigError as exc:
        return [ConfigProblem(p.file, p.line, p.column, f"sites[{s}]." + p.path if p.path else f"sites[{s}]",
                              p.message) for p in exc.problems]
    return []
