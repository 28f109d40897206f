"""Every file in tests/transcripts/pop3/ played through the POP3 session loop, three ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.transcripts.pop3_runner import run

FILES = sorted((Path(__file__).parent / "pop3").glob("*.txt"))
# Transcripts that show a bug in src/: name -> what is wrong (strict: fixing it fails here).
KNOWN_BUGS: dict[str, str] = {}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f, marks=pytest.mark.xfail(reason=KNOWN_BUGS[f.stem], strict=True))
        if f.stem in KNOWN_BUGS
        else f
        for f in FILES
    ],
    ids=[f.stem for f in FILES],
)
def test_transcript(path: Path, tmp_path: Path) -> None:
    run(path, tmp_path)


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 30
