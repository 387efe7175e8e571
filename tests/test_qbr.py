"""`casebook report qbr`: the QBR pack of a seeded quarter, read back (HTML and PDF)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from pypdf import PdfReader
from sqlalchemy import Engine
from typer.testing import CliRunner

from cli.main import app as cli
from reports import qbr
from tests import test_report_cli
from tests.test_facts import _work_week

runner = test_report_cli.runner  # the CLI on a fresh SQLite database


def test_the_qbr_pack_has_every_section_in_html_and_pdf(
    runner: CliRunner, sqlite_engine: Engine, tmp_path: Path
) -> None:
    vendor = f"v-{uuid.uuid4().hex[:6]}"
    _work_week(sqlite_engine, vendor)
    _work_week(sqlite_engine, f"v-{uuid.uuid4().hex[:6]}")  # another vendor: not in the pack
    args = ["report", "qbr", "--vendor", vendor, "--quarter", "2026Q4", "--out", str(tmp_path)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    html_path = tmp_path / f"qbr-{vendor}-2026Q4.html"
    pdf_path = tmp_path / f"qbr-{vendor}-2026Q4.pdf"
    assert result.output.split() == [str(html_path), str(pdf_path)]

    page = html_path.read_text()
    for section_id, heading in qbr.SECTIONS:
        assert f'<section id="{section_id}"><h2>{heading}</h2>' in page
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 5
    # 5 of 6 SLAs met: 0.8333 against 0.9, inside the 10 % amber band.
    assert re.search(r"<td>SLA attainment</td><td>0.8333</td><td>0.9</td>.*?>amber<", page)

    reader = PdfReader(pdf_path)
    assert len(reader.pages) == len(qbr.SECTIONS)
    for pdf_page, (_, heading) in zip(reader.pages, qbr.SECTIONS, strict=True):
        assert heading in pdf_page.extract_text()
    assert f"QBR 2026Q4: {vendor}" in reader.pages[0].extract_text()
    assert "triage" in reader.pages[2].extract_text()  # B's breach, its only cause


def test_rag_statuses() -> None:
    assert qbr.rag(0.95, 0.9, True, 0.1) == "green"
    assert qbr.rag(0.85, 0.9, True, 0.1) == "amber"
    assert qbr.rag(0.7, 0.9, True, 0.1) == "red"
    assert qbr.rag(3.0, 4.0, False, 0.1) == "green"
    assert qbr.rag(4.3, 4.0, False, 0.1) == "amber"
    assert qbr.rag(5.0, 4.0, False, 0.1) == "red"
    assert qbr.rag(None, 4.0, False, 0.1) == "n/a"


def test_a_bad_quarter_or_vendor_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    bad = runner.invoke(cli, ["report", "qbr", "--vendor", "v", "--quarter", "2026Q5"])
    assert bad.exit_code != 0 and "2026Q5" in bad.output
    out = tmp_path / "pack"
    sneaky = ["report", "qbr", "--vendor", "../x", "--quarter", "2026Q4", "--out", str(out)]
    refused = runner.invoke(cli, sneaky)
    assert refused.exit_code != 0 and "vendor" in refused.output
    assert not out.exists()
