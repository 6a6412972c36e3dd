"""A single-node Weaviate server built from its Go module and bound to loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from docstreams_dev.errors import StackError
from docstreams_dev.stack import tools
from docstreams_dev.stack.service import LocalService, atomic_dir

MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"
# Fixed per data dir: Weaviate's raft state remembers the node name.
NODE_NAME = "docstreams-node"


class WeaviateServer(LocalService):
    name = "weaviate"

    @property
    def version(self) -> str:
        return self.settings.weaviate_version

    @property
    def home(self) -> Path:
        return self.settings.cache_dir / "weaviate" / self.version

    @property
    def binary(self) -> Path:
        return self.home / "weaviate-server"

    @property
    def ports(self) -> dict[str, int]:
        s = self.settings
        return {
            "http": s.weaviate_http_port,
            "grpc": s.weaviate_grpc_port,
            "gossip": s.weaviate_gossip_port,
            "data": s.weaviate_data_port,
            "raft": s.weaviate_raft_port,
            "raft_rpc": self.raft_rpc_port,
        }

    @property
    def raft_rpc_port(self) -> int:
        # On a localhost cluster Weaviate computes a peer's RPC port as its raft port + 1, so any
        # other value would leave the node unable to reach itself and never elect a leader.
        return self.settings.weaviate_raft_port + 1

    def installed(self) -> bool:
        return self.binary.exists()

    def install(self) -> None:
        go = tools.require_go()
        staging = atomic_dir(self.home.with_name(self.home.name + ".bin"))
        env = {
            **os.environ,
            "GOBIN": str(staging),
            "CGO_ENABLED": "0",  # as the official builds: a static binary, no C toolchain
            "GOTOOLCHAIN": "local",
        }
        argv = [go, "install", "-trimpath", "-ldflags=-s -w", f"{MODULE}@{self.version}"]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        built = staging / "weaviate-server"
        if done.returncode != 0 or not built.exists():
            raise StackError(
                f"building Weaviate {self.version} failed "
                f"(CGO_ENABLED=0 GOTOOLCHAIN=local {' '.join(argv)}):\n"
                + (done.stdout + done.stderr)[-4000:]
            )
        self.home.mkdir(parents=True, exist_ok=True)
        built.rename(self.binary)
        shutil.rmtree(staging, ignore_errors=True)

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> tuple[Sequence[str], Mapping[str, str]]:
        s = self.settings
        env = {
            **os.environ,
            "PERSISTENCE_DATA_PATH": str(self.data_dir),
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
            "DEFAULT_VECTORIZER_MODULE": "none",
            "ENABLE_MODULES": "",
            "DISABLE_TELEMETRY": "true",
            # Off unless asked for: else a pprof listener on :6060 (a port others may use).
            "GO_PROFILING_DISABLE": "false" if s.weaviate_pprof_port else "true",
            "GO_PROFILING_PORT": str(s.weaviate_pprof_port or 6060),
            "DEBUG_ENDPOINTS_ENABLED": "true" if s.weaviate_pprof_port else "false",
            "CLUSTER_HOSTNAME": NODE_NAME,
            "CLUSTER_IN_LOCALHOST": "true",
            "CLUSTER_BIND_ADDR": "127.0.0.1",
            "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
            "CLUSTER_GOSSIP_BIND_PORT": str(s.weaviate_gossip_port),
            "CLUSTER_DATA_BIND_PORT": str(s.weaviate_data_port),
            "RAFT_PORT": str(s.weaviate_raft_port),
            "RAFT_INTERNAL_RPC_PORT": str(self.raft_rpc_port),
            "RAFT_JOIN": f"{NODE_NAME}:{self.raft_rpc_port}",
            "RAFT_BOOTSTRAP_EXPECT": "1",
            "GRPC_PORT": str(s.weaviate_grpc_port),
            "GOMEMLIMIT": s.weaviate_memory_limit,
            "LOG_LEVEL": "info",
        }
        argv = [
            str(self.binary),
            "--host", "127.0.0.1", "--port", str(s.weaviate_http_port), "--scheme", "http",
        ]  # fmt: skip
        return argv, env

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.settings.weaviate_http_port}/v1/.well-known/ready"
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False
