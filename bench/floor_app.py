"""A second baseline of bench/intake.py (``--floor``): the least an intake that keeps what it accepts does.

``gunicorn --chdir bench floor_app:app``: reads the body, parses it as JSON, pushes it to a Redis list in
one round trip, answers 202 with a small JSON body. Issue 12 measured such an endpoint at about 0.5× the
bare one: the intake target is this floor, which the service's endpoint (verification, claims, record, RQ
job, ledger, count: also one round trip) cannot pass.
"""

import json
import os

from flask import Flask, jsonify, request
from redis import Redis

app = Flask(__name__)
redis = Redis.from_url(os.environ["REDIS_URL"])


@app.post("/webhooks/paradime")
def receive():
    doc = json.loads(request.get_data())
    redis.lpush("bench:floor", json.dumps(doc))
    return jsonify(status="queued"), 202
