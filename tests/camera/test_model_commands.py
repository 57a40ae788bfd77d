"""The agent's model commands reach the ``training`` package by name at run time: without
it, or without TensorFlow (the ``train`` extra), the agent's CLI still builds and the
command says what to install instead of failing with a traceback."""

from __future__ import annotations

import sys

from edge_agent.cli import build_parser, main


def test_train_model_without_tensorflow_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow now fails
    assert main(["train-model", "--quick", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "needs TensorFlow" in err and "pip install 'cityops[train]'" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_without_the_training_package_the_agent_cli_still_builds_and_the_commands_say_why(monkeypatch, capsys):
    for name in ("training", "training.train", "training.cli"):
        monkeypatch.setitem(sys.modules, name, None)
    parser = build_parser()  # the agent's other commands are unaffected
    assert parser.parse_args(["check-config", "x.yaml"]).command == "check-config"
    for command in (["eval-model", "--json"], ["train-model", "--quick"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert "training tools are not installed" in err and "pip install 'cityops[train]'" in err
        assert "Traceback" not in err
