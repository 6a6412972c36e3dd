"""Helpers for tests that run their own stack or drive the CLI against one."""

from __future__ import annotations

import socket
from contextlib import ExitStack
from pathlib import Path

from streams.settings import Settings

PORT_FIELDS = (
    "kafka_port",
    "kafka_controller_port",
    "weaviate_http_port",
    "weaviate_grpc_port",
    "weaviate_gossip_port",
    "weaviate_data_port",
)


def free_ports(count: int) -> list[int]:
    """Distinct ports the OS considers free right now (all held open until all are chosen)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def free_port_pair() -> int:
    """A free port whose successor is free too (Weaviate's raft RPC port is raft + 1)."""
    for _ in range(100):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no pair of adjacent free ports found")


def isolated_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings for a private stack: its own state dir and ports, the shared install cache."""
    ports: dict[str, object] = dict(zip(PORT_FIELDS, free_ports(len(PORT_FIELDS)), strict=True))
    raft = free_port_pair()
    taken = set(ports.values())
    while raft in taken or raft + 1 in taken:
        raft = free_port_pair()
    ports["weaviate_raft_port"] = raft
    return Settings(state_dir=state_dir, **ports, **overrides)  # type: ignore[arg-type]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `docstreams` command use ``settings``."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is not None:
            env[f"DOCSTREAMS_{name.upper()}"] = str(value)
    return env
