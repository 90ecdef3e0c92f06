"""bolt-triage: triage failed Paradime Bolt runs.

The flow is one-way: webhook -> job -> evidence -> decision -> actions.
``create_app`` (in ``triage.app``) is the Flask app factory served by gunicorn. It is imported
on first use, so that the worker and the offline tools (``triage classify``) do not load Flask.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from triage.app import create_app

        return create_app
    raise AttributeError(f"module 'triage' has no attribute {name!r}")
