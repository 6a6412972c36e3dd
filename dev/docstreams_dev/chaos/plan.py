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
    # The size the project promises: more documents, a recording, more processes of every app
    # (the kills aim at any of them), and the range of the gaps between kills.
    small_documents: int = 0  # Markdown and HTML documents, a few windows each
    recording_s: float = 0.0  # a recording with a spoken sentence every 20 s
    replicas: int = 1  # processes of every stage
    tracker_replicas: int = 1
    kill_gap_s: tuple[float, float] = (0.5, 4.0)
    # Then edited versions of the documents are submitted (same ids), with this many kills.
    edit_round: bool = True
    edit_kills: int = 10
    # Settings for both runs (e.g. another embedder), and for the chaos run only.
    settings: dict[str, Any] = field(default_factory=dict)
    chaos_settings: dict[str, Any] = field(default_factory=dict)
    # Called with the chaos run's settings before the stack stops; its result joins the summary.
    inspect: Callable[[Settings], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.scale_events and max(self.replicas, self.tracker_replicas) > 1:
            # A scale-in retires a stage's higher replicas, which the kills would then miss.
            raise ValueError("scale events start every stage at one process: replicas must be 1")


def build_documents(
    folder: Path, pages: int, small_documents: int = 0, recording_s: float = 0.0
) -> dict[str, Path]:
    """A PDF of ``pages`` pages assembled from the bundled sample's real pages, the sample itself,
    and a multi-window plain text file; ``small_documents`` Markdown and HTML files and a
    recording of ``recording_s`` seconds if asked for; built in the run, never committed."""
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
    documents = {"assembled": big, "handbook": SAMPLE, "logbook": text}
    for n in range(small_documents):
        documents[f"note-{n}"] = small_document(folder, n)
    if recording_s > 0:
        documents["briefing"] = _recording(folder, recording_s)
    return documents


def small_document(folder: Path, n: int) -> Path:
    """Markdown (even n) or HTML (odd n): 40 sections of a harbour notice, different per n."""
    sections = [
        (f"Notice {n}.{s}", f"Berth {(n * 7 + s) % 40} closes at tide {s % 7} for dredging of "
         f"lane {n}-{s}; pilots report to the tower on channel {(n + s) % 16}. " * 6)
        for s in range(40)
    ]  # fmt: skip
    if n % 2 == 0:
        path = folder / f"note-{n}.md"
        path.write_text("".join(f"## {title}\n\n{body}\n\n" for title, body in sections))
    else:
        path = folder / f"note-{n}.html"
        body = "".join(f"<h2>{title}</h2><p>{text}</p>" for title, text in sections)
        path.write_text(f"<html><head><title>Notice {n}</title></head><body>{body}</body></html>")
    return path


def _recording(folder: Path, seconds: float) -> Path:
    from docstreams_dev.media import recording, require_tools

    require_tools()
    sentences = {
        at: f"Harbour briefing number {int(at // 20)}: the pilot boat leaves berth "
        f"{int(at // 20) % 40} at high tide."
        for at in range(5, int(seconds) - 10, 20)
    }
    return recording(folder / "briefing.wav", seconds, {float(a): t for a, t in sentences.items()})


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
