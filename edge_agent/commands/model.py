"""``cityops-agent train-model`` and ``cityops-agent eval-model``: the detector's offline
commands. Their work lives in the :mod:`training` package (installed with the ``train``
extra), which the agent itself never imports: these commands look it up by name when
they are built and run, so an agent without it still starts, and the command says what
to install."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from types import ModuleType

from edge_agent.cli import command
from protocol.errors import CityopsError

INSTALL_HINT = "install the train extra: pip install 'cityops[train]' (in a checkout: ./dev setup)"


def training_module(name: str) -> ModuleType:
    """``training.NAME``, or a :class:`CityopsError` naming what is missing and the fix."""
    try:
        return importlib.import_module(f"training.{name}")
    except ModuleNotFoundError as exc:
        raise CityopsError(f"the detector's training tools are not installed ({exc}); {INSTALL_HINT}") from None


def _accept_anything(p: argparse.ArgumentParser) -> None:
    """Make ``p`` take any arguments and just select its handler, which then reports what
    is missing (the real options come from the package that is not there)."""

    def parse_known_args(args=None, namespace=None):  # argparse's own signature
        namespace = namespace if namespace is not None else argparse.Namespace()
        namespace.handler = p.get_default("handler")
        return namespace, []

    p.parse_known_args = parse_known_args  # type: ignore[method-assign]


def _configure_with(module: str, function: str) -> Callable[[argparse.ArgumentParser], None]:
    def configure(p: argparse.ArgumentParser) -> None:
        try:
            getattr(training_module(module), function)(p)
        except CityopsError:
            _accept_anything(p)  # the agent's CLI still builds; the command says what to install

    return configure


@command("train-model", "train the detector from rendered scenes and export int8 + float TFLite "
         "(needs the train extra; --quick: the reduced mode the tests run)",
         _configure_with("train", "add_arguments"))
def train_model(args: argparse.Namespace) -> int:
    return training_module("train").run(args)


@command("eval-model", "mAP@0.5, per-class precision/recall and event recall of a detector on "
         "held-out rendered scenes, or recall, negatives firing and AP on real photos with --real DIR "
         "(--json for a report)", _configure_with("cli", "add_eval_arguments"))
def eval_model(args: argparse.Namespace) -> int:
    return training_module("cli").run_eval(args)
