"""Loading a plan: YAML (or JSON, which is YAML) text → :class:`Plan`, cross-checked
against the taxonomy, the departments and the grids. Every problem at once, each as
``file:line:col key.path: message``."""

from __future__ import annotations

from pathlib import Path

from protocol.config import Document, parse_yaml, validate_document
from protocol.errors import ConfigError, ConfigProblem
from protocol.taxonomy import Taxonomy

from ..geo import GridIndex, point_in_polygon, read_config_text
from .model import Plan

__all__ = ["area_grids", "check_plan", "load_plan_file", "load_plans_dir", "parse_plan"]


def area_grids(plan: Plan, grids: GridIndex) -> set[str]:
    """The grid ids of a plan's area (a polygon covers the grids whose centre is inside)."""
    if plan.area.grids:
        return set(plan.area.grids)
    ring = list(plan.area.polygon or [])
    out = set()
    for g in grids.grids:
        lat, lon = g.centroid()
        if point_in_polygon(lon, lat, [ring]):
            out.add(g.grid_id)
    return out


def check_plan(plan: Plan, doc: Document, tax: Taxonomy, grids: GridIndex,
               departments: set[str]) -> None:
    problems: list[ConfigProblem] = []
    codes = {c.code for c in tax.categories} | {s.code for s in tax.subcategories()}
    cats = {c.code for c in tax.categories}
    for i, g in enumerate(plan.area.grids):
        if g not in grids:
            problems.append(doc.problem(("area", "grids", i), f"unknown grid {g!r}; it is not in the grids file"))
    if plan.area.polygon and not area_grids(plan, grids):
        problems.append(doc.problem(("area", "polygon"), "the polygon covers the centre of no grid"))
    for i, t in enumerate(plan.triggers):
        for k, code in enumerate(t.categories):
            if code not in cats:
                problems.append(doc.problem(("triggers", i, "categories", k),
                                            f"unknown category {code!r}; see protocol/taxonomy.yaml"))
    for code in plan.actions.deadlines:
        if code not in codes:
            problems.append(doc.problem(("actions", "deadlines", code),
                                        f"unknown category {code!r}; see protocol/taxonomy.yaml"))
    for i, dep in enumerate(plan.actions.notify):
        if dep not in departments:
            problems.append(doc.problem(("actions", "notify", i),
                                        f"unknown department {dep!r}; known: {', '.join(sorted(departments))}"))
    ac = plan.actions.agent_config
    if ac is not None:
        if not ac.overlay:
            problems.append(doc.problem(("actions", "agent_config", "overlay"), "the overlay is empty"))
        if ac.scope == "points" and not plan.points:
            problems.append(doc.problem(("actions", "agent_config", "scope"),
                                        "scope 'points' needs points to name the agents"))
    if problems:
        raise ConfigError(problems)


def parse_plan(text: str, filename: str, tax: Taxonomy, grids: GridIndex,
               departments: set[str]) -> Plan:
    doc = parse_yaml(text, filename)
    plan = validate_document(Plan, doc)
    check_plan(plan, doc, tax, grids, departments)
    return plan


def load_plan_file(path: Path, tax: Taxonomy, grids: GridIndex, departments: set[str]) -> Plan:
    return parse_plan(read_config_text(path, "plan file"), str(path), tax, grids, departments)


def load_plans_dir(folder: Path, tax: Taxonomy, grids: GridIndex,
                   departments: set[str]) -> dict[str, tuple[Plan, str]]:
    """Every ``*.yaml`` plan in ``folder``: ``{name: (plan, text)}``. All problems of all
    files at once; two files with one name are an error."""
    out: dict[str, tuple[Plan, str]] = {}
    problems: list[ConfigProblem] = []
    if not folder.is_dir():
        raise ConfigError([ConfigProblem(str(folder), None, None, "", "the plans folder does not exist")])
    for path in sorted(folder.glob("*.y*ml")):
        text = read_config_text(path, "plan file")
        try:
            plan = parse_plan(text, str(path), tax, grids, departments)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if plan.name in out:
            problems.append(ConfigProblem(str(path), None, None, "name", f"plan {plan.name!r} is defined twice"))
        out[plan.name] = (plan, text)
    if problems:
        raise ConfigError(problems)
    return out
