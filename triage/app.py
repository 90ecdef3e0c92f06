"""The Flask app factory: ``gunicorn 'triage.app:create_app()'``."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from redis import Redis
from werkzeug.exceptions import HTTPException

from triage import api, broker, logs, metrics, monitoring
from triage.config import Settings, Verification, load_settings, require_web
from triage.intake import bp as intake_bp
from triage.ledger import Ledger
from triage.statuspage import bp as statuspage_bp
from triage.store import Store

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, redis: Redis | None = None) -> Flask:
    """Build the web app. Settings are read (and checked) here, so a bad config stops gunicorn at start.

    No Redis call is made here: a web process whose Redis is down still starts, and answers 503
    on ``/readyz`` and on intake until Redis is back (``/healthz`` answers 200: the process is up).
    """
    settings = settings or load_settings()
    require_web(settings)
    redis = redis or broker.connect(settings.redis_url)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook.max_body_bytes
    app.extensions["triage"] = {
        "settings": settings,
        "store": Store(redis, settings.webhook.dedup_ttl_seconds, settings.retention),
        "queue": broker.queue(redis, settings.queue_name),
        "ledger": Ledger(redis, settings.ledger),
        "metrics_registry": monitoring.registry(redis),
    }
    metrics.install(redis)  # this process's webhook counts go to Redis, beside every worker's
    app.before_request(logs.untag)  # gthread reuses threads: no request inherits another's triage id
    app.teardown_request(logs.untag)
    app.register_blueprint(intake_bp)
    api.register(app)
    app.register_blueprint(monitoring.bp)
    app.register_blueprint(statuspage_bp)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Every error is JSON, including Flask's own (404, 405, 413); under /api/ with its request id."""
        return jsonify(error=exc.name.lower().replace(" ", "_"), message=exc.description, **api.request_ref()), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error")
        return jsonify(error="internal", message="unexpected error; it has been logged", **api.request_ref()), 500

    if settings.webhook.verification is Verification.NONE:
        log.warning("=" * 72)
        log.warning("WEBHOOK VERIFICATION IS OFF (webhook.verification: none): anyone who can reach")
        log.warning("/webhooks/paradime can make this service retry runs. Set PARADIME_WEBHOOK_SECRET.")
        log.warning("=" * 72)
    else:
        log.info("webhook verification: %s", settings.webhook.verification)
    return app
