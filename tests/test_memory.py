"""How an app process gives memory back: glibc thresholds fixed at start, the OpenAI SDK
without the aiohttp it would otherwise import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Each case runs in a fresh interpreter: glibc's thresholds are per process and only move.
_MAPPED_AFTER_A_LARGE_FREE = """
import ctypes, sys
from streams.memory import tune_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    tune_allocator()
libc.free(libc.malloc(8 << 20))  # a big buffer freed: glibc's default raises its threshold
before = libc.mallinfo2().hblks
buffer = libc.malloc(512 << 10)  # a response body's size
print(libc.mallinfo2().hblks - before)  # 1 if it is mapped on its own
"""


def _mapped_blocks(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _MAPPED_AFTER_A_LARGE_FREE, mode],
                         capture_output=True, text=True, check=True, env=env)  # fmt: skip
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_app_processes_map_large_buffers_on_their_own_even_after_a_larger_free() -> None:
    # glibc's default: after the 8 MiB free, a 512 KiB buffer comes from the heap, whose holes
    # stay resident; an app process keeps mapping it, so freeing it returns the memory.
    assert _mapped_blocks("default") == 0
    assert _mapped_blocks("tuned") == 1


def test_the_openai_client_is_made_without_importing_aiohttp_which_stays_importable() -> None:
    _in_a_fresh_interpreter(
        "from streams.adapters.openai_client import openai_client",
        "client = openai_client(Settings(openai_api_key='sk-test'))",
        "assert client.embeddings is not None and 'openai' in sys.modules",
        "assert 'aiohttp' not in sys.modules, 'aiohttp was imported'",
        "import aiohttp  # others may still import it",
    )


def test_the_stages_that_only_move_vectors_never_import_numpy() -> None:
    _in_a_fresh_interpreter(
        "import streams.cli, streams.apps, streams.download, streams.extract, streams.chunk",
        "import streams.embed, streams.index",
        "from streams.adapters.embedders import OpenAIEmbedder",
        "OpenAIEmbedder(Settings(openai_api_key='sk-test'))._client",
        "assert 'numpy' not in sys.modules, 'numpy was imported'",
    )


def _in_a_fresh_interpreter(*lines: str) -> None:
    """Run ``lines`` where nothing is imported yet (sys and Settings given)."""
    code = "\n".join(["import sys", "from streams.settings import Settings", *lines])
    subprocess.run([sys.executable, "-c", code], check=True)


def test_vectors_are_scaled_to_unit_length_unless_all_zero_or_of_unit_length_already() -> None:
    from array import array

    from streams.vectors import normalised

    assert normalised(array("f", [3.0, 4.0])) == array("f", [0.6, 0.8])
    assert normalised(array("f", [0.0, 0.0])) == array("f", [0.0, 0.0])
    unit = array("f", [0.6, 0.8])
    assert normalised(unit) is unit  # of unit length already: not copied
