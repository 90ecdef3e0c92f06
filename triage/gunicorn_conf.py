"""gunicorn settings for the web process, importable from an installed package:
``gunicorn --config python:triage.gunicorn_conf 'triage.app:create_app()'`` (what ``triage web`` runs).

The web process only verifies, validates and enqueues, so a few workers go far;
PORT, WEB_CONCURRENCY, GUNICORN_THREADS and LOG_LEVEL override the defaults.

The configuration is checked when gunicorn reads this module, before it loads the app: a bad
setting stops gunicorn with one line naming it (exit 2), not with gunicorn's traceback.
"""

import os
import re
import sys

from gunicorn.glogging import Logger

from triage import logs
from triage.config import Settings, load_settings, require_web
from triage.errors import ConfigError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip() or str(default)
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        print(f"bolt-triage web: configuration error: {name}: expected a whole number >= 1, got {value!r}",
              file=sys.stderr, flush=True)
        sys.exit(2)
    return int(value)


def _check_settings() -> Settings:
    try:
        settings = load_settings()
        require_web(settings)
        logs.install(logs.secrets_of(settings), level=os.environ.get("LOG_LEVEL", "info"), fmt=LOG_FORMAT)
    except (ConfigError, ValueError) as exc:  # logs.install: ValueError naming LOG_LEVEL / LOG_FORMAT
        print(f"bolt-triage web: configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    return settings


LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
# In the master; the forked workers inherit the handlers (preload_app below).
_check_settings()
logs.guard_std_streams()  # the settings are good: from here on, what gunicorn or a library prints is a log line too

bind = f"0.0.0.0:{_env_int('PORT', 8000)}"
workers = _env_int("WEB_CONCURRENCY", 2)
threads = _env_int("GUNICORN_THREADS", 4)
timeout = 30  # a request never calls out except to Redis, whose client times out in 5 s
graceful_timeout = 20
# Build the app once in the master: a bad configuration stops gunicorn at once with one message.
# No Redis connection is opened at build time, and redis-py's pool resets itself after fork.
preload_app = True
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'

_TOKEN_IN_PATH = re.compile(r"(/webhooks/paradime/)[^ ?]+")


class RedactingLogger(Logger):
    """gunicorn's own loggers, masked like every other line (``triage.logs``); the shared-token mode's
    token in the URL path is masked in the access log."""

    def setup(self, cfg):
        super().setup(cfg)  # gunicorn makes new handlers here, at start and on HUP
        logs.redact_handlers(["gunicorn.error", "gunicorn.access"], reformat=LOG_FORMAT == "json")

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "{raw_uri}e"):
            if isinstance(atoms.get(key), str):
                atoms[key] = _TOKEN_IN_PATH.sub(r"\1***", atoms[key])
        return atoms


logger_class = RedactingLogger
