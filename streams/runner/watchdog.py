"""Exit when the loop stops turning, so a stuck process is replaced instead of holding its
partitions forever (e.g. a Kafka call that never returns after the coordinator rolled its
transaction back; a restarted process fences it and goes on). On Kubernetes the liveness probe
does the same; locally nothing else would."""

from __future__ import annotations

import faulthandler
import logging
import os
import threading

from streams.health import Health

log = logging.getLogger(__name__)
EXIT_STUCK = 70


def start_watchdog(name: str, health: Health, stopped: threading.Event) -> None:
    def watch() -> None:
        while not stopped.wait(5.0):
            if not health.live():
                log.critical("%s: no progress for %.0fs; exiting to be restarted (stacks follow)",
                             name, health.stall_after_s)  # fmt: skip
                faulthandler.dump_traceback(all_threads=True)  # where it was stuck, for the logs
                logging.shutdown()
                os._exit(EXIT_STUCK)

    threading.Thread(target=watch, daemon=True, name="watchdog").start()
