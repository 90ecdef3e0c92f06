"""gunicorn settings for the web process (``gunicorn -c config/gunicorn.conf.py 'triage.app:create_app()'``).

The web process only verifies, validates and enqueues, so a few sync workers go far;
PORT, WEB_CONCURRENCY, GUNICORN_THREADS and LOG_LEVEL override the defaults.
"""

import os
import re

from gunicorn.glogging import Logger

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
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
    """The shared-token mode may put the token in the URL path: never write it to the access log."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "{raw_uri}e"):
            if isinstance(atoms.get(key), str):
                atoms[key] = _TOKEN_IN_PATH.sub(r"\1***", atoms[key])
        return atoms


logger_class = RedactingLogger
