"""The command line: help texts, input validation, and the whole pipeline through the CLI."""

import subprocess
import sys

import pytest
import torch

from discrete_priors.cli import build_parser
from discrete_priors.commands import parse_labels

COMMANDS = ["train-ae", "encode", "train-prior", "sample", "eval", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_of_every_command_has_help(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help text"


def test_module_help_runs():
    out = subprocess.run([sys.executable, "-m", "discrete_priors", "--help"], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command in out.stdout


def test_parse_labels_cycles_and_rejects_garbage():
    assert parse_labels("1,2", 5).tolist() == [1, 2, 1, 2, 1]
    assert parse_labels(None, 3) is None
    with pytest.raises(ValueError, match="comma-separated integers"):
        parse_labels("a,b", 2)


def test_unknown_prior_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train-prior", "--latents", "x", "--out", "y", "--prior", "gaussian"])
    assert "invalid choice" in capsys.readouterr().err
