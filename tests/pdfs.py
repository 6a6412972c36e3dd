"""Real PDFs for tests and the demo, written with fpdf2 (text you can select and extract).

`python -m tests.pdfs` rewrites samples/harbour-handbook.pdf, the demo's bundled sample: an
original text (licensed with this repository), five pages, one known sentence on page 3.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "harbour-handbook.pdf"
SAMPLE_SENTENCE = "The harbour master lights forty-two blue lanterns on the north pier every night."
SAMPLE_PAGE = 3

_FILLER = (
    "Ships arrive with the tide and leave with the next one. Each crew files a manifest with the "
    "harbour office, which records the cargo, the berth and the expected time of departure. "
)


def write_pdf(path: Path, pages: list[str], *, password: str | None = None) -> Path:
    pdf = FPDF()
    pdf.set_auto_page_break(auto=False)
    pdf.set_creation_date(datetime(2026, 1, 1, tzinfo=UTC))  # reproducible bytes
    if password:
        pdf.set_encryption(owner_password=password + "-owner", user_password=password)
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 5, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def numbered_pages(count: int, topic: str = "harbour") -> list[str]:
    """Pages whose text says which page they are, so tests can check page ranges."""
    return [
        f"Page {n} of the {topic} record. Marker {topic}-page-{n}. " + _FILLER * 3
        for n in range(1, count + 1)
    ]


def sample_pages() -> list[str]:
    pages = [
        "The Harbour Handbook\n\nA short guide to the imaginary port of Kestrel Bay, written as "
        "the sample document of docstreams. " + _FILLER * 2,
        "Chapter 1. Berths and tides.\n\nThe inner basin has twelve berths. " + _FILLER * 3,
        "Chapter 2. Lights.\n\n" + _FILLER + SAMPLE_SENTENCE + " The lanterns are trimmed at "
        "dusk and the log is signed by the night watch. " + _FILLER,
        "Chapter 3. Cargo.\n\nGrain, timber and salt fish make up most of the trade. "
        + _FILLER * 3,
        "Chapter 4. Weather.\n\nFog rolls in from the west in autumn; the bell buoy sounds every "
        "thirty seconds while it lasts. " + _FILLER * 2,
    ]
    assert SAMPLE_SENTENCE in pages[SAMPLE_PAGE - 1]
    return pages


if __name__ == "__main__":
    print(write_pdf(SAMPLE, sample_pages()))
