"""Measure the local stack: cold install per service, warm start, idle RSS.

    .venv/bin/python -m bench.stack            # warm start + idle RSS (uses the normal cache)
    .venv/bin/python -m bench.stack --cold     # also cold installs, in an empty HOME

Prints one JSON line last. Ports and state are private (free ports, temp dir), so a running
`docstreams stack up` is not disturbed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import private_stack_settings
from streams.settings import Settings


def cold_install_seconds(service: str) -> float:
    """Install one service with empty Maven/Go/docstreams caches (a fresh HOME)."""
    with tempfile.TemporaryDirectory(prefix="docstreams-cold-") as home:
        env = {
            **os.environ,
            "HOME": home,
            "GOPATH": f"{home}/go",
            "GOCACHE": f"{home}/.cache/go-build",
            "DOCSTREAMS_CACHE_DIR": f"{home}/.cache/docstreams",
            # Maven finds its repository via the JVM's user.home (from passwd), not $HOME.
            "MAVEN_OPTS": f"-Dmaven.repo.local={home}/.m2/repository",
        }
        code = (
            "from streams.settings import Settings; from docstreams_dev.stack import Stack; "
            f"s = Stack(Settings()); svc = s.{service}; svc.install()"
        )
        began = time.monotonic()
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        seconds = time.monotonic() - began
        # Go's module cache is read-only by design; make it deletable.
        subprocess.run(["chmod", "-R", "u+w", home], check=False)
    return seconds


def warm_start(settings: Settings, settle_s: float) -> dict[str, object]:
    stack = Stack(settings)
    stack.install()
    try:
        first = {r.service: round(r.seconds, 2) for r in stack.up()}  # fresh data dirs
        stack.down()
        began = time.monotonic()
        second = {r.service: round(r.seconds, 2) for r in stack.up()}  # existing data
        warm_total = time.monotonic() - began
        time.sleep(settle_s)
        rss = {s.name: s.rss_mb for s in stack.status()}
    finally:
        stack.down(purge=True)
    return {
        "first_start_s": first,
        "warm_start_s": second,
        "warm_up_total_s": round(warm_total, 2),
        "idle_rss_mb": rss,
        "idle_settle_s": settle_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="also time cold installs")
    parser.add_argument("--settle", type=float, default=30.0, help="idle seconds before RSS")
    args = parser.parse_args()
    result: dict[str, object] = {}
    if args.cold:
        result["cold_install_s"] = {
            svc: round(cold_install_seconds(svc), 1) for svc in ("kafka", "weaviate")
        }
    with tempfile.TemporaryDirectory(prefix="docstreams-bench-") as state:
        result.update(warm_start(private_stack_settings(Path(state)), args.settle))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
