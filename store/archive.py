"""The archive of closed cases' histories: append to the hash chain, read back, verify."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import Session, col, select

from store.tables import CaseArchiveRow, CaseRow

__all__ = ["CaseArchiveRow", "append", "archived", "history_json", "verify", "write_file"]

GENESIS = "genesis"


def link_hash(prev_chain_hash: str, case_id: str, history_sha256: str) -> str:
    return hashlib.sha256(f"{prev_chain_hash}|{case_id}|{history_sha256}".encode()).hexdigest()


def archived(session: Session, case_id: str) -> CaseArchiveRow | None:
    return session.exec(select(CaseArchiveRow).where(CaseArchiveRow.case_id == case_id)).first()


def archived_case_ids(session: Session) -> list[str]:
    return list(session.exec(select(CaseArchiveRow.case_id).order_by(col(CaseArchiveRow.seq))))


def append(session: Session, case_id: str, history_json: str) -> CaseArchiveRow:
    """Add a case's history at the head of the chain (the caller retries on a lost race)."""
    data = gzip.compress(history_json.encode(), mtime=0)
    digest = hashlib.sha256(data).hexdigest()
    head = session.exec(select(CaseArchiveRow).order_by(col(CaseArchiveRow.seq).desc())).first()
    prev = head.chain_hash if head else GENESIS
    row = CaseArchiveRow(
        case_id=case_id,
        archived_at=datetime.now(UTC),
        history_gz=data,
        history_sha256=digest,
        prev_chain_hash=prev,
        chain_hash=link_hash(prev, case_id, digest),
    )
    session.add(row)
    session.flush()
    return row


def file_name(row: CaseArchiveRow) -> str:
    return f"{row.seq:08d}-{row.case_id}.history.json.gz"


def write_file(directory: Path, row: CaseArchiveRow) -> Path:
    """The entry's compressed history as a file (written whole, then renamed into place)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(row)
    if not path.exists():
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(row.history_gz)
        os.replace(partial, path)
    return path


def history_json(row: CaseArchiveRow) -> str:
    return gzip.decompress(row.history_gz).decode()


@dataclass(frozen=True)
class ArchiveProblem:
    case_id: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.case_id or '-'}: {self.message}"


def verify(session: Session, directory: Path | None = None) -> list[ArchiveProblem]:
    """Every way the archive differs from an intact chain, naming the case concerned; with
    `directory`, also every way the file copies differ from the entries."""
    problems: list[ArchiveProblem] = []
    prev, expected_seq = GENESIS, None
    rows = session.exec(select(CaseArchiveRow).order_by(col(CaseArchiveRow.seq))).all()
    for row in rows:
        if expected_seq is not None and row.seq != expected_seq:
            problems.append(
                ArchiveProblem(
                    row.case_id,
                    f"archive entries {expected_seq}..{(row.seq or 0) - 1} before it are missing",
                )
            )
        if hashlib.sha256(row.history_gz).hexdigest() != row.history_sha256:
            problems.append(ArchiveProblem(row.case_id, "history altered: SHA-256 mismatch"))
        if row.prev_chain_hash != prev:
            problems.append(
                ArchiveProblem(row.case_id, "chain broken: an earlier entry was removed or altered")
            )
        if link_hash(row.prev_chain_hash, row.case_id, row.history_sha256) != row.chain_hash:
            problems.append(ArchiveProblem(row.case_id, "entry altered: chain hash mismatch"))
        prev, expected_seq = row.chain_hash, (row.seq or 0) + 1
    problems += _closed_but_missing(session, {r.case_id for r in rows})
    if directory is not None:
        problems += _file_problems(directory, rows)
    return problems


def _file_problems(directory: Path, rows: Sequence[CaseArchiveRow]) -> list[ArchiveProblem]:
    problems = []
    expected = {file_name(r): r for r in rows}
    for name, row in expected.items():
        path = directory / name
        if not path.exists():
            problems.append(ArchiveProblem(row.case_id, f"archive file {name} is missing"))
        elif hashlib.sha256(path.read_bytes()).hexdigest() != row.history_sha256:
            problems.append(ArchiveProblem(row.case_id, f"archive file {name} altered"))
    for path in sorted(directory.glob("*.history.json.gz")):
        if path.name not in expected:
            problems.append(ArchiveProblem(None, f"archive file {path.name} has no entry"))
    return problems


def _closed_but_missing(session: Session, archived_ids: set[str]) -> list[ArchiveProblem]:
    """A closed case (per the read model) with no archive entry: removed, or not yet archived."""
    closed = session.exec(select(CaseRow.id).where(CaseRow.status == "closed")).all()
    return [
        ArchiveProblem(cid, "closed case has no archive entry")
        for cid in closed
        if cid not in archived_ids
    ]
