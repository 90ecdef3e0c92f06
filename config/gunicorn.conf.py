"""Kept so that ``gunicorn --config config/gunicorn.conf.py …`` (the Procfile before 0.2) still works
from a checkout. The settings live in the package: ``triage web``, or
``gunicorn --config python:triage.gunicorn_conf 'triage.app:create_app()'``."""

import sys

from triage.gunicorn_conf import *  # noqa: F403

print("bolt-triage web: config/gunicorn.conf.py is deprecated; run `triage web` "
      "(or gunicorn --config python:triage.gunicorn_conf)", file=sys.stderr, flush=True)
