"""``cityops-agent train-model`` and ``cityops-agent eval-model``: the detector's commands
(the work is in :mod:`edge_agent.detect`; training needs the ``train`` extra)."""

from __future__ import annotations

import argparse

from edge_agent.cli import command


def _configure_train(p: argparse.ArgumentParser) -> None:
    from edge_agent.detect import train

    train.add_arguments(p)


def _configure_eval(p: argparse.ArgumentParser) -> None:
    from edge_agent.detect.cli import add_eval_arguments

    add_eval_arguments(p)


@command("train-model", "train the detector from rendered scenes and export int8 + float TFLite "
         "(needs the train extra; --quick: the reduced mode the tests run)", _configure_train)
def train_model(args: argparse.Namespace) -> int:
    from edge_agent.detect import train

    return train.run(args)


@command("eval-model", "mAP@0.5, per-class precision/recall and event recall of a detector on "
         "held-out rendered scenes (--json for a report)", _configure_eval)
def eval_model(args: argparse.Namespace) -> int:
    from edge_agent.detect.cli import run_eval

    return run_eval(args)
