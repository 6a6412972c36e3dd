"""Audio and video through ffprobe and ffmpeg (Debian's ffmpeg): duration, and one window's
audio as 16 kHz mono 16-bit PCM, what every transcriber accepts (and 19 MB per 10 minutes, under
OpenAI's 25 MB upload limit once wrapped as WAV).

Both run as child processes with a timeout: a hostile container file costs at most that, and
never the stage's memory (ffmpeg streams the window to a file; nothing is held whole).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson

from streams.errors import PoisonInput, ResourceLimitExceeded

SAMPLE_RATE = 16_000
BYTES_PER_SECOND = SAMPLE_RATE * 2  # mono, 16-bit

# Sniffed types (by the file's bytes, see extractors.sniff).
WAV = "audio/wav"
MP3 = "audio/mpeg"
M4A = "audio/mp4"
MP4 = "video/mp4"
MOV = "video/quicktime"
OGG = "audio/ogg"
FLAC = "audio/flac"
WEBM = "video/webm"
MKV = "video/x-matroska"
MEDIA_TYPES = (WAV, MP3, M4A, MP4, MOV, OGG, FLAC, WEBM, MKV)


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    has_audio: bool


def sniff_media(head: bytes) -> str | None:
    """The media type from a file's first bytes, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return M4A
        return MOV if brand == b"qt  " else MP4
    if head[:4] == b"OggS":
        return OGG
    if head[:4] == b"fLaC":
        return FLAC
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, or WebM when it says so
        return WEBM if b"webm" in head[:64] else MKV
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return MP3
    return None


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (Debian: apt-get install ffmpeg)")
    return path


def probe(path: Path, timeout_s: float) -> MediaInfo:
    command = [_tool("ffprobe"), "-v", "error", "-show_entries",
               "format=duration:stream=codec_type", "-of", "json", str(path)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ResourceLimitExceeded("time", f"ffprobe took longer than {timeout_s:g}s") from None
    if done.returncode != 0:
        raise PoisonInput(f"not a readable audio/video file: {_tool_reason(done, path)}")
    info = orjson.loads(done.stdout or b"{}")
    kinds = {s.get("codec_type") for s in info.get("streams", [])}
    try:
        duration = float(info.get("format", {}).get("duration"))
    except (TypeError, ValueError):
        raise PoisonInput("not a readable audio/video file: no duration") from None
    return MediaInfo(duration_s=duration, has_audio="audio" in kinds)


def extract_audio(path: Path, start_s: float, end_s: float, out: Path, timeout_s: float) -> Path:
    """[start_s, end_s) of the file's first audio stream as raw 16 kHz mono s16le PCM."""
    command = [_tool("ffmpeg"), "-nostdin", "-v", "error", "-y",
               "-ss", f"{start_s:.3f}", "-t", f"{max(0.0, end_s - start_s):.3f}",
               "-i", str(path), "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE),
               "-f", "s16le", str(out)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        out.unlink(missing_ok=True)
        raise ResourceLimitExceeded(
            "time", f"decoding audio {start_s:.0f}-{end_s:.0f}s took longer than {timeout_s:g}s"
        ) from None
    if done.returncode != 0:
        raise PoisonInput(f"cannot decode the audio at {start_s:.0f}s: {_tool_reason(done, path)}")
    return out


def _tool_reason(done: subprocess.CompletedProcess[bytes], path: Path) -> str:
    """ffmpeg's last error line, without the blob's path it names the file by."""
    lines = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return lines[0].replace(f"{path}: ", "").replace(str(path), "the file")[:300]


__all__ = ["MEDIA_TYPES", "MediaInfo", "extract_audio", "probe", "sniff_media"]
