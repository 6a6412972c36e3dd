"""Transcription: the local transcriber's word error rate on generated speech, and the extract
stage's memory and speed on a 1-hour recording.

- wer: each sentence spoken by espeak-ng (the voice the tests use), transcribed by PocketSphinx
  (TRANSCRIBER=local), word error rate = word-level edit distance / reference words.
- hour: a 60-minute WAV (a sentence every minute) extracted window by window (MEDIA_WINDOW_S,
  default 600 s) by the real extract stage in this process; its peak RSS and the peak RSS of
  the ffmpeg child, sampled from /proc every 0.1 s, and the real-time factor.
- pipeline: the same recording through every app (`run all`) on a private stack; the peak RSS
  of each app's own process, of its parser child (where the transcriber runs, under
  PARSER_MEMORY_MB) and of ffmpeg.

    .venv/bin/python bench/transcription.py [--minutes 60]

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import psutil

from bench.processes import Memory
from docstreams_dev.media import recording
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.media import extract_audio
from streams.adapters.transcribers import LocalSphinx
from streams.download import plan_windows
from streams.extract import Extract
from streams.messages import ExtractTask
from streams.settings import Settings

SENTENCES = [
    "The harbour master lights forty two blue lanterns on the north pier every night.",
    "The ferry to the island leaves at seven in the morning.",
    "Please close the gate when you leave the garden.",
    "The committee approved the budget for the new library.",
    "Heavy rain is expected along the coast tomorrow afternoon.",
    "The witness said she saw a red car near the station.",
    "Our quarterly revenue grew by twelve percent this year.",
    "The patient should take one tablet twice a day with water.",
    "Members of the council will vote on the proposal next week.",
    "The bridge will be closed for repairs until the end of March.",
    "Students must submit their essays before Friday at noon.",
    "The museum opens at ten and closes at six on weekdays.",
]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i]
        for j, hyp in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def word_error_rate(folder: Path) -> dict[str, Any]:
    transcriber = LocalSphinx()
    errors = total = 0
    samples = []
    for i, sentence in enumerate(SENTENCES):
        source = recording(folder / f"s{i}.wav", 12.0, {1.0: sentence})
        pcm = extract_audio(source, 0.0, 12.0, folder / f"s{i}.pcm", 60.0)
        heard = " ".join(w.text for u in transcriber.transcribe(pcm, 0.0) for w in u)
        errors += edit_distance(words(sentence), words(heard))
        total += len(words(sentence))
        samples.append({"said": sentence, "heard": heard})
    return {"sentences": len(SENTENCES), "reference_words": total, "errors": errors,
            "wer": round(errors / total, 3), "samples": samples[:3]}  # fmt: skip


class PeakRss:
    """Peak RSS of this process and of each kind of child (ffmpeg, the parser), every 0.1 s."""

    def __init__(self) -> None:
        self.own = 0
        self.children: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.1):
            self.own = max(self.own, me.memory_info().rss)
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # it may have just exited
                    kind = "ffmpeg" if "ffmpeg" in child.cmdline()[0] else "parser"
                    rss = child.memory_info().rss
                    self.children[kind] = max(self.children.get(kind, 0), rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def hour(folder: Path, minutes: int) -> dict[str, Any]:
    total = minutes * 60.0
    source = recording(folder / "hour.wav", total,
                       {float(t): SENTENCES[t // 60 % len(SENTENCES)]
                        for t in range(30, int(total), 60)})  # fmt: skip
    settings = Settings(blob_dir=folder / "blobs")
    store = LocalBlobStore(settings.blob_dir)
    partial = store.partial("bench", "hour")
    partial.data.write_bytes(source.read_bytes())
    blob = store.commit(partial, "bench", "hour", "b" * 64)
    extract = Extract(settings, store)
    windows = plan_windows("audio/wav", 0, None, settings, 1, total)
    before = psutil.Process().memory_info().rss
    began = time.monotonic()
    segments = 0
    with PeakRss() as peak:
        for i, w in enumerate(windows):
            task = ExtractTask(tenant_id="bench", document_id="hour", version="b" * 64, window=i,
                               window_count=len(windows), blob=blob, content_type="audio/wav",
                               page_start=w.first, page_end=w.last, start_s=w.start_s,
                               end_s=w.end_s)  # fmt: skip
            batch, _ = extract(task)
            segments += len(batch.pages)  # type: ignore[attr-defined]
    seconds = time.monotonic() - began
    return {"recording_minutes": minutes, "windows": len(windows),
            "window_s": settings.media_window_s, "segments": segments,
            "seconds": round(seconds, 1), "real_time_factor": round(seconds / total, 3),
            "extract_peak_rss_mb": round(peak.own / 2**20, 1),
            "extract_rss_before_mb": round(before / 2**20, 1),
            "ffmpeg_peak_rss_mb": round(peak.children.get("ffmpeg", 0) / 2**20, 1),
            "parser_child_peak_rss_mb": round(peak.children.get("parser", 0) / 2**20, 1),
            "file_mb": round(source.stat().st_size / 2**20, 1)}  # fmt: skip


def pipeline(folder: Path, minutes: int) -> dict[str, Any]:
    """The same recording through the real apps (`run all`, each app its own process) on a
    private stack; peak RSS of each app's process (and of ffmpeg) sampled from /proc."""
    from docstreams_dev.apps import running_apps
    from docstreams_dev.stack import Stack
    from docstreams_dev.stack.ports import private_stack_settings
    from streams.producer import submit
    from streams.progress import follow

    total = minutes * 60.0
    source = recording(folder / "pipeline.wav", total,
                       {float(t): SENTENCES[t // 60 % len(SENTENCES)]
                        for t in range(30, int(total), 60)})  # fmt: skip
    settings = private_stack_settings(
        folder / "stack", blob_dir=folder / "pipeline-blobs", local_source_roots=[folder]
    )
    stack = Stack(settings)
    stack.up()
    try:
        with running_apps(settings, folder / "apps.log") as supervisor:
            # Every 0.1 s: an ffmpeg child lives only as long as one window's cut.
            with Memory(supervisor, {}, interval_s=0.1).sampling() as memory:
                began = time.monotonic()
                request = submit(settings, str(source), "bench", "hour")
                progress = follow(settings, "bench", "hour", request.submitted_at, 1800)
                seconds = time.monotonic() - began
            peaks = memory.peaks
    finally:
        stack.down()
    if progress.completed is None:
        raise RuntimeError(f"the recording did not complete: {progress.failure}")
    names = ["download", "download-parser", "extract", "extract-parser", "chunk", "embed",
             "index", "tracker", "ffmpeg"]  # fmt: skip
    return {"recording_minutes": minutes, "seconds": round(seconds, 1),
            "chunks": progress.completed.chunks,
            "peak_rss_mb": {n: round(peaks[n], 1) for n in names if n in peaks}}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="docstreams-transcription-") as scratch:
        folder = Path(scratch)
        result = {"wer": word_error_rate(folder), "hour": hour(folder, args.minutes)}
        if not args.skip_pipeline:
            result["pipeline"] = pipeline(folder, args.minutes)
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
