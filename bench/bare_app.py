"""The baseline of bench/intake.py: the least a Flask endpoint under gunicorn can do (204, no body).

``gunicorn --chdir bench bare_app:app``; it reads the body, as the real endpoint must, and nothing else.
"""

from flask import Flask, request

app = Flask(__name__)


@app.post("/webhooks/paradime")
def receive() -> tuple[str, int]:
    request.get_data()
    return "", 204
