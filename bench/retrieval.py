"""Can a user find what they read? Recall of `docstreams search` in each mode, on real documents
the project does not ship, ingested through the whole pipeline with the offline embedder.

Documents: Debian's documentation PDFs of gnuplot (311 pages), Asymptote and Octave (packages
gnuplot-doc, asymptote-doc, octave-doc, fetched with `apt-get download` and unpacked under the
cache; nothing is installed). They are not the large-PDF bench's corpus (R and PSTricks).

Queries: N sentences drawn at random (fixed seed) from the PDFs' own page text, each asked

- as written (a user pasting a sentence they remember), and
- thinned: every other content word removed (a user who remembers some of the words).

A hit is right when it is the sentence's document and its page range covers the sentence's
page. Reported per mode (vector, keyword, hybrid at several alphas): recall@1 and recall@5.

Recordings (``--recordings``): sentences of the same manuals spoken by two synthesisers
(espeak-ng and Festival, both from Debian) at known times in one long recording with silence
and noise between them, ingested through the pipeline with the configured transcriber; a hit is
right when its time range covers the sentence's.

    .venv/bin/python bench/retrieval.py [--sentences 200] [--seed 7] [--recordings [--spoken 40]]

Prints one JSON line per corpus and one last for the run; exits 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import re
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench.run import CACHE
from bench.transcription import ensure_festival
from docstreams_dev.apps import running_apps
from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import private_stack_settings
from streams.adapters import extractors
from streams.adapters.embedders import Embedder, make_embedder
from streams.adapters.weaviate_store import ChunkIndex, Hit, SearchMode
from streams.producer import submit
from streams.progress import follow_all
from streams.settings import Settings

TENANT = "retrieval"
# The spoken sentences are the manuals' own: asked in the manuals' tenant, the PDFs' pages would
# answer them before the recording. So the recording has a tenant of its own.
SPOKEN_TENANT = "retrieval-spoken"
CORPUS = CACHE / "retrieval"
PACKAGES = {  # Debian package: the PDFs of it that make the corpus
    "gnuplot-doc": ["usr/share/doc/gnuplot/gnuplot.pdf"],
    "asymptote-doc": ["usr/share/doc/asymptote/asymptote.pdf"],
    "octave-doc": ["usr/share/doc/octave/octave.pdf", "usr/share/doc/octave/liboctave.pdf"],
}
ALPHAS = (0.25, 0.5, 0.75)
GOALS = {"exact_recall_at_5": 0.95, "thinned_recall_at_5": 0.80, "spoken_recall_at_5": 0.9}
# Function words: kept when a query is thinned (removing them would not test recall of content).
_FUNCTION_WORDS = """a about above after again against all am an and any are as at be because
    been before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers him his how i if in into is it its itself
    just may me might more most must my no nor not now of off on once only or other our ours out
    over own same shall she should so some such than that the their theirs them then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours"""
STOPWORDS = frozenset(_FUNCTION_WORDS.split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


@dataclass(frozen=True)
class Sentence:
    document_id: str
    page: int
    text: str
    start_s: float | None = None  # spoken: where in the recording
    end_s: float | None = None


# --- corpus --------------------------------------------------------------------------------
def corpus_pdfs() -> list[Path]:
    """The manuals, unpacked from their Debian packages into the cache on first use."""
    CORPUS.mkdir(parents=True, exist_ok=True)
    paths = []
    for package, members in PACKAGES.items():
        root = CORPUS / package
        if not all((root / m).exists() for m in members):
            with tempfile.TemporaryDirectory() as download:
                subprocess.run(["apt-get", "download", "-q", package], cwd=download, check=True,
                               capture_output=True)  # fmt: skip
                (deb,) = Path(download).glob("*.deb")
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        paths += [root / m for m in members]
    return paths


def page_texts(path: Path) -> list[str]:
    """Each page's text as the pipeline's extractor reads it."""
    pages = extractors.pdf_page_count(path)
    texts: list[str] = []
    for first in range(1, pages + 1, 50):
        window = extractors.pdf_window("pypdfium2", path, first, min(first + 49, pages))
        texts += [p.text for p in window]
    return texts


def sentences_of(document_id: str, pages: list[str]) -> Iterable[Sentence]:
    """Prose sentences of 8 to 40 words (not code, tables or index lines)."""
    for number, text in enumerate(pages, start=1):
        flat = " ".join(text.replace("\u00ad", "").split())
        for candidate in re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat):
            words = candidate.split()
            if not 8 <= len(words) <= 40 or not candidate.endswith("."):
                continue
            if sum(bool(_WORD.fullmatch(w.strip(".,;:()"))) for w in words) < 0.8 * len(words):
                continue
            yield Sentence(document_id, number, candidate)


def draw(pdfs: dict[str, list[str]], count: int, seed: int) -> list[Sentence]:
    """``count`` sentences at random; a sentence found on more than one page is left out (it
    has no single right answer)."""
    everything = [s for doc, pages in pdfs.items() for s in sentences_of(doc, pages)]
    seen: dict[str, int] = {}
    for s in everything:
        seen[s.text.lower()] = seen.get(s.text.lower(), 0) + 1
    unique = [s for s in everything if seen[s.text.lower()] == 1]
    return random.Random(seed).sample(unique, min(count, len(unique)))  # noqa: S311 (a fixed draw)


def thinned(text: str) -> str:
    """Every other content word removed (the first kept); function words stay."""
    kept, content = [], 0
    for word in text.split():
        bare = word.strip(".,;:()!?\"'").lower()
        if bare and bare not in STOPWORDS and _WORD.fullmatch(bare):
            content += 1
            if content % 2 == 0:
                continue
        kept.append(word)
    return " ".join(kept)


# --- measuring -------------------------------------------------------------------------------
def ranks(index: ChunkIndex, embedder: Embedder, tenant: str, queries: list[tuple[str, Sentence]],
          mode: SearchMode, alpha: float, limit: int = 5) -> list[int | None]:  # fmt: skip
    """The rank (1-based) of the first right hit for each query, None when not in the top."""
    vectors = embedder.embed([q for q, _ in queries]) if mode != "keyword" else None
    found: list[int | None] = []
    for i, (query, sentence) in enumerate(queries):
        vector = None if vectors is None else [float(x) for x in vectors[i]]
        hits = index.search(tenant, vector, limit, text=query, mode=mode, alpha=alpha)
        found.append(next((n for n, h in enumerate(hits, 1) if right(h, sentence)), None))
    return found


def right(hit: Hit, sentence: Sentence) -> bool:
    if hit.document_id != sentence.document_id:
        return False
    if sentence.start_s is None or sentence.end_s is None:
        return hit.page_start <= sentence.page <= hit.page_end
    if hit.start_s is None or hit.end_s is None:
        return False
    # Spoken: the hit's time range holds at least half of the sentence.
    overlap = min(hit.end_s, sentence.end_s) - max(hit.start_s, sentence.start_s)
    return overlap >= 0.5 * (sentence.end_s - sentence.start_s)


def recall(found: list[int | None], at: int) -> float:
    return round(sum(r is not None and r <= at for r in found) / max(len(found), 1), 3)


def modes() -> list[tuple[str, SearchMode, float]]:
    return [("vector", "vector", 1.0), ("keyword", "keyword", 0.0),
            *((f"hybrid@{a}", "hybrid", a) for a in ALPHAS)]  # fmt: skip


def measure(
    settings: Settings, tenant: str, queries: dict[str, list[tuple[str, Sentence]]]
) -> dict[str, Any]:
    embedder = make_embedder(settings)
    index = ChunkIndex(settings)
    table: dict[str, dict[str, Any]] = {}
    misses: dict[str, list[dict[str, Any]]] = {}
    try:
        for label, mode, alpha in modes():
            row: dict[str, Any] = {}
            for kind, asked in queries.items():
                found = ranks(index, embedder, tenant, asked, mode, alpha)
                row[kind] = {"recall_at_1": recall(found, 1), "recall_at_5": recall(found, 5)}
                if label == f"hybrid@{settings.search_alpha}":
                    misses[kind] = [{"query": q, "document": s.document_id, "page": s.page}
                                    for (q, s), r in zip(asked, found, strict=True)
                                    if r is None][:5]  # fmt: skip
            table[label] = row
    finally:
        index.close()
    return {"modes": table, "default_alpha": settings.search_alpha, "hybrid_misses": misses}


def ingest_all(settings: Settings, tenant: str, files: dict[str, Path]) -> float:
    began = time.monotonic()
    submitted = {doc: submit(settings, str(path), tenant, doc).submitted_at
                 for doc, path in files.items()}  # fmt: skip
    for document_id, progress in follow_all(settings, tenant, submitted, 3600).items():
        if progress.completed is None:
            raise RuntimeError(f"{document_id} did not complete: {progress.failure}")
    return time.monotonic() - began


def documents_corpus(
    settings: Settings, pdfs: dict[str, Path], texts: dict[str, list[str]], count: int, seed: int
) -> dict[str, Any]:
    drawn = draw(texts, count, seed)
    seconds = ingest_all(settings, TENANT, pdfs)
    queries = {
        "exact": [(s.text, s) for s in drawn],
        "thinned": [(thinned(s.text), s) for s in drawn],
    }
    result = measure(settings, TENANT, queries)
    best = result["modes"][f"hybrid@{settings.search_alpha}"]
    return {
        "corpus": "documents",
        "files": {doc: {"pages": len(texts[doc]), "sha256": _sha256(p)} for doc, p in pdfs.items()},
        "sentences": len(drawn),
        "seed": seed,
        "ingest_s": round(seconds, 1),
        **result,
        "passed": best["exact"]["recall_at_5"] >= GOALS["exact_recall_at_5"]
        and best["thinned"]["recall_at_5"] >= GOALS["thinned_recall_at_5"],
    }


# --- recordings ------------------------------------------------------------------------------
def _espeak(text: str, out: Path) -> list[str]:
    return ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(out), text]


def _festival(text: str, out: Path) -> list[str]:
    return ["text2wave", "-o", str(out), "-eval", "(voice_kal_diphone)"]  # text on stdin


VOICES = {"espeak-ng": _espeak, "festival": _festival}  # two synthesisers from Debian
GAP_S = 6.0  # pink noise between sentences


def spoken_recording(folder: Path, sentences: list[Sentence]) -> tuple[Path, list[Sentence]]:
    """One recording: the sentences in turn, alternating voices, GAP_S of noise between them,
    over a low pink-noise floor; each sentence's place in it returned."""
    placed, inputs, delays, at = [], [], [], GAP_S
    for i, sentence in enumerate(sentences):
        voice = list(VOICES)[i % 2]
        wav = folder / f"said-{i}.wav"
        command = VOICES[voice](sentence.text, wav)
        subprocess.run(command, input=sentence.text.encode() if voice == "festival" else None,
                       check=True, capture_output=True)  # fmt: skip
        with wave.open(str(wav)) as w:
            seconds = w.getnframes() / w.getframerate()
        placed.append(replace(sentence, document_id="spoken", start_s=at, end_s=at + seconds))
        inputs += ["-i", str(wav)]
        delays.append(f"[{i + 1}:a]aresample=16000,adelay={int(at * 1000)}:all=1[s{i}]")
        at += seconds + GAP_S
    mix = "".join(f"[s{i}]" for i in range(len(sentences)))
    graph = ";".join([*delays, f"[0:a]{mix}amix=inputs={len(sentences) + 1}:normalize=0[a]"])
    out = folder / "spoken.wav"
    noise = ["-f", "lavfi", "-t", f"{at:.1f}", "-i",
             "anoisesrc=r=16000:c=pink:a=0.01"]  # fmt: skip
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *noise, *inputs,
                    "-filter_complex", graph, "-map", "[a]", "-ar", "16000", "-ac", "1",
                    str(out)], check=True, capture_output=True)  # fmt: skip
    return out, placed


def recordings_corpus(
    settings: Settings, folder: Path, texts: dict[str, list[str]], count: int, seed: int
) -> dict[str, Any]:
    pool = [s for s in draw(texts, 10 * count, seed + 1) if len(s.text.split()) <= 25]
    ensure_festival()
    recording, placed = spoken_recording(folder, pool[:count])
    seconds = ingest_all(settings, SPOKEN_TENANT, {"spoken": recording})
    result = measure(settings, SPOKEN_TENANT, {"spoken": [(s.text, s) for s in placed]})
    best = result["modes"][f"hybrid@{settings.search_alpha}"]
    return {
        "corpus": "recordings",
        "sentences": len(placed),
        "voices": list(VOICES),
        "recording_s": round(placed[-1].end_s or 0.0, 1),
        "transcriber": settings.transcriber,
        "seed": seed,
        "ingest_s": round(seconds, 1),
        **result,
        "passed": best["spoken"]["recall_at_5"] >= GOALS["spoken_recall_at_5"],
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--recordings", action="store_true", help="also spoken sentences")
    parser.add_argument("--only-recordings", action="store_true")
    parser.add_argument("--spoken", type=int, default=40, help="sentences in the recording")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="docstreams-retrieval-"))
    settings = private_stack_settings(workdir / "stack", blob_dir=workdir / "blobs",
                                      local_source_roots=[CORPUS, workdir],
                                      batch_max_wait_s=0.2)  # fmt: skip
    stack = Stack(settings)
    stack.up()
    results = []
    try:
        pdfs = {p.stem: p for p in corpus_pdfs()}
        texts = {doc: page_texts(path) for doc, path in pdfs.items()}
        with running_apps(settings, workdir / "apps.log"):
            if not args.only_recordings:
                results.append(documents_corpus(settings, pdfs, texts, args.sentences, args.seed))
                print(orjson.dumps(results[-1]).decode(), flush=True)
            if args.recordings or args.only_recordings:
                spoken = recordings_corpus(settings, workdir, texts, args.spoken, args.seed)
                results.append(spoken)
                print(orjson.dumps(spoken).decode(), flush=True)
    finally:
        stack.down()
    ok = all(r["passed"] for r in results)
    print(orjson.dumps({"corpora": [r["corpus"] for r in results], "passed": ok}).decode())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
