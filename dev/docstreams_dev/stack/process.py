"""Background service processes tracked by pid files.

A pid file holds the pid *and* the process start time, so a recycled pid belonging to some other
program is never mistaken for our service (and never signalled).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson
import psutil

# psutil reports create_time in seconds with platform-dependent rounding.
_START_TIME_TOLERANCE_S = 0.05


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path, pid_path: Path
) -> int:
    """Start ``argv`` detached from our session, output appended to ``log_path``."""
    # Services outlive the command that started them on purpose. weaviate-client turns every
    # warning category on at import, so silence Popen's "still running" here, at call time.
    warnings.filterwarnings("ignore", r"subprocess \d+ is still running", ResourceWarning)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the shell that ran `stack up` must not kill it
        )
    record = {"pid": proc.pid, "started": psutil.Process(proc.pid).create_time(), "argv": argv[0]}
    pid_path.write_bytes(orjson.dumps(record))
    return proc.pid


def running_process(pid_path: Path) -> psutil.Process | None:
    """The live process recorded in ``pid_path``, or None (a stale pid file is removed)."""
    try:
        record = orjson.loads(pid_path.read_bytes())
        proc = psutil.Process(int(record["pid"]))
        alive = (
            abs(proc.create_time() - float(record["started"])) < _START_TIME_TOLERANCE_S
            and proc.status() != psutil.STATUS_ZOMBIE
        )
    except FileNotFoundError:
        return None
    except (psutil.Error, orjson.JSONDecodeError, KeyError, ValueError, TypeError):
        alive = False
    if not alive:
        pid_path.unlink(missing_ok=True)
        return None
    return proc


def stop(pid_path: Path, *, timeout_s: float) -> bool:
    """SIGTERM (a clean shutdown for both Kafka and Weaviate), then SIGKILL after ``timeout_s``.

    Returns True if a process was running.
    """
    proc = running_process(pid_path)
    if proc is None:
        return False
    try:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    except psutil.NoSuchProcess:
        pass
    pid_path.unlink(missing_ok=True)
    return True


def rss_bytes(proc: psutil.Process) -> int | None:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return None


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind ``port`` now (as servers do, with SO_REUSEADDR).

    A bind test also catches a port held by an outgoing connection, which a connect test misses.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_holders(port: int) -> str:
    """Who holds a loopback TCP port, for a test's failure message ("nobody" if no one)."""
    holders = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port:
            try:
                who = " ".join(psutil.Process(conn.pid).cmdline()[:6]) if conn.pid else "?"
            except psutil.Error:
                who = f"pid {conn.pid}"
            holders.add(f"{conn.status} pid={conn.pid} {who}")
    return "; ".join(sorted(holders)) or "nobody"


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_owner(port: int) -> int | None:
    """Pid listening on a local TCP port, when the OS lets us see it."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
