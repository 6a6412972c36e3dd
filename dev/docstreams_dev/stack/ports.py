"""Free loopback ports for private stacks (tests, benchmarks, chaos runs) beside a dev stack."""

from __future__ import annotations

import socket
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

        def bind(port: int) -> int:
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", port))
            chosen: int = sock.getsockname()[1]
            return chosen

        raft = None
        for _ in range(100):
            candidate = bind(0)
            try:
                bind(candidate + 1)
            except OSError:
                continue
            raft = candidate
            break
        if raft is None:
            raise RuntimeError("no two adjacent free loopback ports found")
        ports: dict[str, Any] = {name: bind(0) for name in _SINGLE_PORTS}
    return Settings(state_dir=state_dir, weaviate_raft_port=raft, **ports, **overrides)


def free_port_block(size: int) -> int:
    """A free loopback port with ``size - 1`` free ports after it (`run all` numbers its
    apps' metrics ports from it)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base: int = s.getsockname()[1]
        if base + size < 65535 and all(port_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports")
