"""docs/SECURITY.md shows the policy table exactly as access/policy.py renders it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from access.policy import render_markdown

DOC = Path(__file__).parent.parent / "docs" / "SECURITY.md"
START, END = "<!-- policy-table:start -->\n", "<!-- policy-table:end -->"


def _doc_table() -> str:
    text = DOC.read_text()
    return text[text.index(START) + len(START) : text.index(END)]


def test_the_security_doc_shows_the_policy_table() -> None:
    assert _doc_table() == render_markdown(), "run `python -m access.policy` into docs/SECURITY.md"


def test_python_m_access_policy_prints_the_table() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "access.policy"], capture_output=True, text=True, check=True
    ).stdout
    assert printed == render_markdown()
    # An SOP owner reads no case data; an auditor reads all of it.
    assert "| read case | own vendor | own vendor | — | any |" in printed
