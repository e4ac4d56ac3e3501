"""`sage key create`: the key goes to stderr once, the manifest on stdout holds only its hash and
the options given, and a bad option exits 2 naming it."""

from __future__ import annotations

import pytest
import yaml

from sage_api.apikey import KEY_PREFIX, key_hash
from sage_cli.main import main


def test_the_manifest_holds_the_hash_and_the_key_is_printed_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["key", "create", "team-a", "--models", "chat, minilm", "--rpm", "600", "--tpm", "1000",
                 "--max-concurrent", "4", "--expires", "2027-01-01T00:00:00Z"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    (key,) = [line.strip() for line in err.splitlines() if line.strip().startswith(KEY_PREFIX)]
    assert key not in out
    manifest = yaml.safe_load(out)
    assert manifest["kind"] == "APIKey"
    assert manifest["metadata"] == {"name": "team-a"}
    assert manifest["spec"]["keyHash"] == key_hash(key)
    assert manifest["spec"]["models"] == ["chat", "minilm"]
    assert manifest["spec"]["requestsPerMinute"] == 600
    assert manifest["spec"]["tokensPerMinute"] == 1000
    assert manifest["spec"]["maxConcurrentRequests"] == 4
    assert manifest["spec"]["expiresAt"] == "2027-01-01T00:00:00Z"


def test_two_keys_differ(capsys: pytest.CaptureFixture[str]) -> None:
    main(["key", "create", "a"])
    main(["key", "create", "a"])
    hashes = [line for line in capsys.readouterr().out.splitlines() if "keyHash" in line]
    assert len(set(hashes)) == 2


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--rpm", "0"], "--rpm"), (["--expires", "soon"], "--expires"), (["--max-concurrent", "-1"], "--max-concurrent")],
)
def test_bad_options_exit_2_naming_the_option(args: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["key", "create", "x", *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert named in err
    assert "Traceback" not in err
