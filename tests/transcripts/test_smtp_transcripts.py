"""Every file in tests/transcripts/smtp/ played through the full stack, three ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcripts.runner import run, transcript_files

HERE = Path(__file__).parent
FILES = sorted((HERE / "smtp").glob("*.txt"))
# Transcripts that show a bug in src/: name -> what is wrong (strict: fixing it fails here).
KNOWN_BUGS: dict[str, str] = {}


@pytest.mark.parametrize("path", transcript_files(HERE / "smtp", KNOWN_BUGS))
def test_transcript(path: Path, tmp_path: Path) -> None:
    run(path, tmp_path)


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 30
