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


def passed(summary: dict[str, Any]) -> bool:
    return (
        summary["duplicates"] == summary["missing"] == summary["mismatched"] == 0
        and not summary["incomplete"]
        and summary["found_chunks"] == summary["expected_chunks"] > 0
    )
