"""`python -m sage_operator`: --help explains every setting; a bad setting is a clear error."""

from __future__ import annotations

import pytest

from sage_operator.__main__ import parse_args
from sage_operator.settings import OperatorSettings


def test_help_lists_every_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in OperatorSettings.model_fields:
        assert f"SAGE_OPERATOR_{name.upper()}" in text


def test_a_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SAGE_OPERATOR_WORKERS", "0")
    with pytest.raises(SystemExit) as exit_info:
        parse_args([])
    assert exit_info.value.code == 2
    assert "SAGE_OPERATOR_WORKERS" in capsys.readouterr().err


def test_namespaces_from_the_environment_and_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGE_OPERATOR_NAMESPACES", "ml, search,")
    assert parse_args([])[1].namespaces == ["ml", "search"]
    assert parse_args(["-n", "a", "-n", "b"])[1].namespaces == ["a", "b"]
    assert parse_args(["-A"])[1].namespaces == []
    monkeypatch.setenv("SAGE_OPERATOR_NAMESPACES", "")
    assert parse_args([])[1].namespaces == []


def test_unknown_backend_in_image_overrides_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAGE_OPERATOR_ENGINE_IMAGES", '{"tensorrt": "x:1"}')
    with pytest.raises(SystemExit):
        parse_args([])
    assert "tensorrt" in capsys.readouterr().err
