import json

import pytest

from tokenzip.cli import main


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "models", "methods"):
        assert command in out


def test_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "gemma-3-270m" in out and "minilm-l6" in out and "installed" in out


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"gemma-3-270m", "minilm-l6"}


def test_methods(capsys):
    assert main(["methods"]) == 0
    assert main(["methods", "--json"]) == 0


def test_unknown_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_bad_stage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["methods", "--stage", "nope"])
    assert exc.value.code == 2


def test_demo_unknown_model(capsys):
    assert main(["demo", "--model", "gemma-270m"]) == 2
    err = capsys.readouterr().err
    assert "unknown model" in err and "gemma-3-270m" in err
