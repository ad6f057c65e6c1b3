# Run: gunicorn --worker-class gthread --threads 100 --chdir examples flask_generator_stream:app
#      then: curl -N 'http://127.0.0.1:8000/count?n=5'
"""A per-request stream in Flask: GET /count?n=5 streams ``data: 1`` ... ``data: 5`` and ends."""

import time
from collections.abc import Iterator

from flask import Flask, request

from ssehub import Hub
from ssehub.integrations.flask import EventSourceResponse

hub = Hub()  # only to end open streams on Ctrl+C or SIGTERM; no channel is used here
app = Flask(__name__)


@app.get("/count")
def count() -> EventSourceResponse:
    """Count from 1 to ``n``, one event per number, ``delay`` seconds apart."""
    n = int(request.args.get("n", 5))
    delay = float(request.args.get("delay", 0))

    def numbers() -> Iterator[int]:
        for i in range(1, n + 1):
            yield i  # a str, a dict (sent as JSON) or a Message(...) works too
            if delay:
                time.sleep(delay)

    return EventSourceResponse(numbers(), hub=hub)
