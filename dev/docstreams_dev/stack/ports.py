"""Free loopback ports for private stacks (tests, benchmarks, chaos runs) beside a dev stack.

A port is chosen well before a server binds it: a tracker's port when the test session starts,
though the tracker starts minutes later. So ports are drawn below the kernel's ephemeral range,
which neither an outgoing connection nor a ``bind(0)`` (a test's HTTP server, a client) ever
takes. A port from ``bind(0)`` was taken once that way (a CI run: the tracker's port held by
another listener, the tracker unable to start).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from docstreams_dev.stack.process import port_free
from streams.settings import Settings

_SINGLE_PORTS = (
    "kafka_port",
    "kafka_controller_port",
    "weaviate_http_port",
    "weaviate_grpc_port",
    "weaviate_gossip_port",
    "weaviate_data_port",
    "tracker_port",
)


def private_stack_settings(state_dir: Path, **overrides: Any) -> Settings:
    """Settings for a stack of its own: ``state_dir`` and free ports, the shared install cache.

    All sockets stay bound until every port is chosen, so the ports are distinct; Weaviate's
    raft port needs its successor free too (its RPC port is raft + 1).
    """
    with ExitStack() as held:

        def hold(port: int) -> bool:
            sock = held.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

        candidates = _fixed_port_candidates()
        raft = next(p for p in candidates if hold(p) and hold(p + 1))
        ports: dict[str, Any] = {
            name: next(p for p in candidates if hold(p)) for name in _SINGLE_PORTS
        }
    return Settings(state_dir=state_dir, weaviate_raft_port=raft, **ports, **overrides)


def free_port_block(size: int) -> int:
    """A free loopback port with ``size - 1`` free ports after it (`run all` numbers its
    apps' metrics ports from it)."""
    return next(
        base
        for base in _fixed_port_candidates(size)
        if all(port_free(base + i) for i in range(size))
    )


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel hands out to outgoing connections and ``bind(0)``."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default; macOS's range (49152-) starts above it
    return low, high


def _fixed_port_candidates(size: int = 2, tries: int = 500) -> Iterator[int]:
    """Random ports (with ``size - 1`` after each) between 10000 and the ephemeral range;
    above it where that range starts too low to leave room."""
    low, high = ephemeral_port_range()
    floor, ceiling = (10_000, low - size) if low - size > 12_000 else (high + 1, 65_535 - size)
    if ceiling <= floor:
        raise RuntimeError(f"no room for fixed ports beside the ephemeral range {low}-{high}")
    draw = random.SystemRandom()
    for _ in range(tries):
        yield draw.randrange(floor, ceiling)
    raise RuntimeError(f"no free loopback ports found between {floor} and {ceiling}")
