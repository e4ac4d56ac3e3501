"""How the README's shell blocks are read for the tests that run them (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_harness.readme import section_commands, strip_comment


def test_comments_go_quotes_stay() -> None:
    assert strip_comment("make images   # builds # things") == "make images   "
    assert strip_comment('curl -d \'{"a": "#1"}\' # note') == 'curl -d \'{"a": "#1"}\' '
    assert strip_comment("echo a#b") == "echo a#b"
    assert strip_comment("# a comment line") == ""


def test_a_sections_first_bash_block_one_command_per_line(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# T\n## Other\n```bash\nno\n```\n## Install\ntext\n```bash\n"
        "make images   # build\n\nhelm install x \\\n  --set a=b\n# only a comment\nkubectl get x &\n```\n"
        "```bash\nnot the first block\n```\n## Next\n"
    )
    assert section_commands("Install", readme) == ["make images", "helm install x --set a=b", "kubectl get x &"]
    with pytest.raises(ValueError, match="no '## Missing' section"):
        section_commands("Missing", readme)


def test_the_real_readme_installs_with_helm_and_reaches_the_gateway() -> None:
    commands = section_commands("Install on a cluster")
    assert commands[0] == "make images"
    assert any(line.startswith("helm install sage charts/sage") for line in commands)
    assert any("port-forward" in line and "svc/sage-gateway" in line and line.endswith("&") for line in commands)
