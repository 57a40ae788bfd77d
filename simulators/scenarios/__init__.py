"""Scenarios for the simulators and the demo: data files describing sites, devices,
ordinary days and the incidents and faults injected into them.

* :mod:`.model` — the file format (strict models);
* :mod:`.loader` — ``load_scenario(name_or_path)`` with file:line:col errors;
* :mod:`.physics` — what devices read at a simulated moment (pure);
* :mod:`.devices` — simulated Modbus devices that follow a timeline;
* :mod:`.agents` — the agent config each site becomes;
* :mod:`.truth` — the ground truth: problems injected and when they should be detected.

Shipped scenarios are the ``*.yaml`` files next to this module.
"""

from .loader import LoadedScenario, load_scenario, scenario_names
from .model import Scenario

__all__ = ["LoadedScenario", "Scenario", "load_scenario", "scenario_names"]
