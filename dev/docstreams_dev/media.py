"""Recordings for the audio/video tests and benchmarks, made when needed: speech from espeak-ng
(Debian) placed at given times in silence with ffmpeg, as WAV or as MP4 with a video track."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from docstreams_dev.errors import MissingToolError

# A slow, spaced voice: what PocketSphinx's US English model hears best from espeak-ng.
VOICE = ["-v", "en-us", "-s", "130", "-g", "8"]


def require_tools() -> None:
    missing = [t for t in ("espeak-ng", "ffmpeg", "ffprobe") if shutil.which(t) is None]
    if missing:  # scripts/bootstrap installs them; a bare machine gets a clear failure
        raise MissingToolError(
            f"missing {missing}: run scripts/bootstrap (apt-get install ffmpeg espeak-ng)"
        )


def speech(text: str, out: Path) -> Path:
    subprocess.run(["espeak-ng", *VOICE, "-w", str(out), text], check=True, capture_output=True)
    return out


def recording(out: Path, total_s: float, sentences: dict[float, str], video: bool = False) -> Path:
    """``total_s`` seconds of silence with each sentence spoken at its time; 16 kHz mono audio,
    plus a small moving test pattern as video when ``video``."""
    inputs: list[str] = []
    delays: list[str] = []
    for i, (at, text) in enumerate(sorted(sentences.items())):
        wav = speech(text, out.parent / f"{out.stem}-{i}.wav")
        inputs += ["-i", str(wav)]
        delays.append(f"[{i + 1}:a]adelay={int(at * 1000)}:all=1[s{i}]")
    count = len(sentences)
    mix = "".join(f"[s{i}]" for i in range(count))
    graph = ";".join([*delays, f"[0:a]{mix}amix=inputs={count + 1}:normalize=0[a]"])
    silence = ["-f", "lavfi", "-t", str(total_s), "-i", "anullsrc=r=16000:cl=mono"]
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", *silence, *inputs]
    if video:
        command += ["-f", "lavfi", "-t", str(total_s), "-i", "testsrc=size=160x120:rate=5"]
    command += ["-filter_complex", graph, "-map", "[a]"]
    if video:
        command += ["-map", f"{count + 1}:v", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"]  # fmt: skip
    command += ["-t", str(total_s), "-ar", "16000", "-ac", "1", str(out)]
    subprocess.run(command, check=True, capture_output=True)
    return out
