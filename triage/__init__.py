"""bolt-triage: triage failed Paradime Bolt runs.

The flow is one-way: webhook -> job -> evidence -> decision -> actions.
``create_app`` (in ``triage.app``) is the Flask app factory served by gunicorn.
"""

from triage.app import create_app

__all__ = ["create_app"]
