"""Speech to text behind one interface: a window's audio (16 kHz mono s16le PCM) in, utterances
of timed words out.

- ``local``: PocketSphinx 5 with the US English model its wheel bundles (no download at run
  time, ~30 MB, a few dozen MB of memory, faster than real time on one core). A voice activity
  segmenter cuts the audio into utterances; each is decoded on its own, so memory is bounded by
  the longest utterance, not the window. Chosen because no Whisper-class model ships its weights
  inside a PyPI package (faster-whisper, whisper.cpp bindings and Moonshine all download them);
  its accuracy is what limits it (word error rate in docs/benchmarks.md).
- ``openai``: the audio transcription API (``whisper-1`` or a compatible server), word
  timestamps from ``verbose_json``; throttling and refusals handled as for embeddings.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from streams.adapters.media import SAMPLE_RATE
from streams.adapters.openai_client import openai_client, openai_sdk
from streams.adapters.pacing import RetryIn, classify_provider_error
from streams.errors import DownstreamUnavailable
from streams.settings import Settings


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


_FRAMES_PER_S = 100  # PocketSphinx's frame rate


class LocalSphinx:
    model = "pocketsphinx-en-us"

    @cached_property
    def _decoder(self) -> Any:
        from pocketsphinx import Decoder

        return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def transcribe(self, pcm: Path, offset_s: float) -> list[Utterance]:
        from pocketsphinx import Segmenter

        segmenter = Segmenter(sample_rate=SAMPLE_RATE)
        utterances = []
        with pcm.open("rb") as audio:
            for segment in segmenter.segment(audio):
                self._decoder.start_utt()
                self._decoder.process_raw(segment.pcm, full_utt=True)
                self._decoder.end_utt()
                at = offset_s + segment.start_time
                words = [
                    Word(
                        s.word.split("(")[0],  # "to(2)": a pronunciation variant of "to"
                        round(at + s.start_frame / _FRAMES_PER_S, 2),
                        round(at + (s.end_frame + 1) / _FRAMES_PER_S, 2),
                    )
                    for s in self._decoder.seg()
                    if _is_word(s.word)
                ]
                if words:
                    utterances.append(words)
        return utterances


def _is_word(token: str) -> bool:
    return token not in ("<s>", "</s>", "<sil>") and not token.startswith(("[", "+"))


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
    key = settings.model_dump_json(include={"transcriber", "openai_transcription_model"})
    if key not in _in_this_process:
        _in_this_process[key] = make_transcriber(settings)
    return _in_this_process[key].transcribe(pcm, offset_s)


def make_transcriber(settings: Settings) -> Transcriber:
    if settings.transcriber == "openai":
        return OpenAITranscriber(settings)
    return LocalSphinx()


__all__ = [
    "LocalSphinx",
    "OpenAITranscriber",
    "Transcriber",
    "Word",
    "make_transcriber",
    "transcribe_in_child",
]
