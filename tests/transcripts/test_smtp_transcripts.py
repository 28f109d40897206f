"""Every file in tests/transcripts/smtp/ played through the full stack, three ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcripts.runner import run

FILES = sorted((Path(__file__).parent / "smtp").glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_transcript(path: Path, tmp_path: Path) -> None:
    run(path, tmp_path)


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 30
