"""Every file in tests/transcripts/pop3/ played through the POP3 session loop, three ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcripts.pop3_runner import run
from tests.transcripts.runner import transcript_files

HERE = Path(__file__).parent
FILES = sorted((HERE / "pop3").glob("*.txt"))
# Transcripts that show a bug in src/: name -> what is wrong (strict: fixing it fails here).
KNOWN_BUGS: dict[str, str] = {}


@pytest.mark.parametrize("path", transcript_files(HERE / "pop3", KNOWN_BUGS))
def test_transcript(path: Path, tmp_path: Path) -> None:
    run(path, tmp_path)


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 30
