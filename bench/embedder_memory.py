"""The local embedder's speed and memory by batch size, with and without onnxruntime's CPU arena.

Each configuration runs in a fresh process: 32 warm-up inputs, then 2 x 512 inputs of 256 tokens
(the model's longest), one thread; reports chunks/s and the process's RSS after. The model file
is the shipped one (`weights`, as recorded in docs/benchmarks.md) unless told otherwise.

    .venv/bin/python bench/embedder_memory.py [dynamic|weights]

Prints one JSON line last.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]

_RUN = """
import sys, time, psutil
sys.path.insert(0, {root!r})
from streams.adapters.embedders import LocalMiniLM
model = LocalMiniLM(memory_arena={arena}, threads=1, quantization={quantization!r})
model._batch = {batch}
texts = [("The harbour master lights forty two blue lanterns on the north pier every night. " * 12)
         [:900] + str(i) for i in range(512)]
model.embed(texts[:32])
began = time.perf_counter()
for _ in range(2):
    model.embed(texts)
seconds = time.perf_counter() - began
print(round(1024 / seconds, 1), round(psutil.Process().memory_info().rss / 2**20))
"""


def main() -> int:
    quantization = sys.argv[1] if len(sys.argv) > 1 else "weights"
    rows = []
    for batch in (8, 16, 32):
        for arena in (False, True):
            code = _RUN.format(root=str(ROOT), arena=arena, batch=batch, quantization=quantization)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout.split()  # fmt: skip
            rows.append({"quantization": quantization, "batch": batch, "arena": arena,
                         "chunks_per_s": float(out[-2]),
                         "rss_mb": int(out[-1])})  # fmt: skip
            print(rows[-1], flush=True)
    print(orjson.dumps({"local_embedder": rows}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
