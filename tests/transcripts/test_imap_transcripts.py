"""Every file in tests/transcripts/imap/ played through the IMAP session loop, three ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcripts.imap_runner import run
from tests.transcripts.runner import transcript_files

HERE = Path(__file__).parent
FILES = sorted((HERE / "imap").glob("*.txt"))
# Transcripts that show a bug in src/: name -> what is wrong (strict: fixing it fails here).
KNOWN_BUGS: dict[str, str] = {}


@pytest.mark.parametrize("path", transcript_files(HERE / "imap", KNOWN_BUGS))
def test_transcript(path: Path, tmp_path: Path) -> None:
    run(path, tmp_path)


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 60


def test_known_bugs_name_transcripts() -> None:
    assert set(KNOWN_BUGS) <= {f.stem for f in FILES}
