# Run: gunicorn --worker-class gthread --threads 100 --chdir examples flask_app:app
"""The seed's example in Flask: publish the time every 5 s to /events/my-channel.

Each open stream holds one server thread: give the server enough threads (one worker process,
or a Redis backend shared by several). Or with waitress, from examples/:
``waitress-serve --threads 100 --channel-request-lookahead 1 flask_app:app``.
"""

import threading
import time
from pathlib import Path

from flask import Flask

from ssehub import Hub, Message
from ssehub.integrations.flask import sse_blueprint

hub = Hub(headers={"Access-Control-Allow-Origin": "*"})

# The EventSource page every example serves.
PAGE = (Path(__file__).parent / "page.html").read_text()

app = Flask(__name__)
app.register_blueprint(sse_blueprint(hub), url_prefix="/events")


@app.get("/")
def page() -> str:
    return PAGE


def tick() -> None:
    while True:
        # From a plain thread (or a view): the hub runs its own event loop thread.
        hub.publish_threadsafe("/events/my-channel", Message(time.ctime(), event="time"))
        time.sleep(5)


threading.Thread(target=tick, name="tick", daemon=True).start()
