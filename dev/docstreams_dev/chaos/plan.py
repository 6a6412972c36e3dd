"""What a chaos run does (ChaosPlan), the documents it ingests, and whether it passed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pypdf import PdfReader, PdfWriter

from docstreams_dev import CHECKOUT
from streams.pipeline import APPS  # every app can be killed: the five stages and the tracker
from streams.settings import Settings

SAMPLE = CHECKOUT / "samples" / "harbour-handbook.pdf"
TENANT = "chaos"


@dataclass(frozen=True)
class ChaosPlan:
    kills: int = 30
    broker_restarts: int = 1
    weaviate_outage_s: float = 20.0
    seed: int = 1
    pages: int = 2000
    timeout_s: float = 1800.0
    workdir: Path | None = None
    keep_stack: bool = False
    victims: tuple[str, ...] = tuple(APPS)  # the apps the kills choose from
    # Stages scaled out (to 2-4 processes) and back in (to 1) at random moments, per round.
    scale_events: int = 0
    # Then edited versions of the documents are submitted (same ids), with this many kills.
    edit_round: bool = True
    edit_kills: int = 10
    # Settings for both runs (e.g. another embedder), and for the chaos run only.
    settings: dict[str, Any] = field(default_factory=dict)
    chaos_settings: dict[str, Any] = field(default_factory=dict)
    # Called with the chaos run's settings before the stack stops; its result joins the summary.
    inspect: Callable[[Settings], dict[str, Any]] | None = None


def build_documents(folder: Path, pages: int) -> dict[str, Path]:
    """A PDF of ``pages`` pages assembled from the bundled sample's real pages, the sample itself,
    and a multi-window plain text file; built in the run, never committed."""
    folder.mkdir(parents=True, exist_ok=True)
    source = PdfReader(SAMPLE)
    writer = PdfWriter()
    while len(writer.pages) < pages:
        for page in source.pages:
            if len(writer.pages) < pages:
                writer.add_page(page)
    big = folder / f"assembled-{pages}.pdf"
    with big.open("wb") as out:
        writer.write(out)
    text = folder / "logbook.txt"
    with text.open("w") as out:
        for n in range(12_000):
            out.write(f"Logbook line {n}: the pilot boat left berth {n % 40} at tide {n % 7}.\n")
    return {"assembled": big, "handbook": SAMPLE, "logbook": text}


def build_edits(folder: Path, documents: dict[str, Path]) -> dict[str, Path]:
    """Edited versions, under the same file names (a version reuses another's objects only if
    it was built the same way, file name included): the PDF with one page replaced by another
    of the sample, the text file with one line changed in the middle; the sample unchanged."""
    folder.mkdir(parents=True, exist_ok=True)
    pdf = documents["assembled"]
    reader, writer = PdfReader(pdf), PdfWriter()
    middle = len(reader.pages) // 2
    for number, page in enumerate(reader.pages):
        writer.add_page(reader.pages[number + 1] if number == middle else page)
    edited_pdf = folder / pdf.name
    with edited_pdf.open("wb") as out:
        writer.write(out)
    text = documents["logbook"]
    lines = text.read_text().splitlines(keepends=True)
    lines[len(lines) // 2] = "Logbook line edited: the harbour master changed this entry.\n"
    edited_text = folder / text.name
    edited_text.write_text("".join(lines))
    return {"assembled": edited_pdf, "handbook": documents["handbook"], "logbook": edited_text}


def passed(summary: dict[str, Any]) -> bool:
    return (
        summary["duplicates"] == summary["missing"] == summary["mismatched"] == 0
        and not summary["incomplete"]
        and summary["found_chunks"] == summary["expected_chunks"] > 0
    )
