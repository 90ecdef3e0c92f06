"""Simulators of Paradime's Bolt API and of Slack: real HTTP servers for the tests and the demo."""

from __future__ import annotations

import time
from typing import Protocol


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def serve_until_interrupted(sim: _Stoppable) -> None:
    """Keep a simulator started in its thread running in the foreground until Ctrl-C."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
