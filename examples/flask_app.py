"""Flask with conveyor: an app factory, tasks declared before the app exists, and tasks that
run inside the Flask app context on the worker (so `current_app`, its config and extensions
work there as in a view).

    pip install flask 'conveyor[flask]'
    cd examples
    conveyor worker flask_app -c 4                  # one terminal: the worker
    flask --app flask_app run                       # another: the web app

    curl -X POST localhost:5000/signup/ada          # {"task_id": "..."}
    curl localhost:5000/tasks/<task_id>             # {"state": "SUCCESS", "value": ...}

The worker finds `conveyor` in this module, and importing the module creates the Flask app
(`app = create_app()` below), so `init_app` has run in the worker too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, current_app

import conveyor as cv
from conveyor.contrib.flask import FlaskConveyor

conveyor = FlaskConveyor()


@conveyor.task(retries=3, retry_backoff=True)
def send_welcome(username: str) -> str:
    """Stands in for sending an e-mail; reads the app's config like any view would."""
    return f"welcome mail to {username} from {current_app.config['MAIL_FROM']}"


def create_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        MAIL_FROM="hello@example.com",
        CONVEYOR_URL=os.environ.get("CONVEYOR_URL")
        or "sqlite:///" + str(Path(__file__).resolve().with_name("flask.db")),
    )
    app.config.update(config)
    conveyor.init_app(app)

    @app.post("/signup/<username>")
    def signup(username: str) -> tuple[dict[str, str], int]:
        result = send_welcome.delay(username)
        return {"task_id": result.id}, 202

    @app.get("/tasks/<task_id>")
    def task_status(task_id: str) -> dict[str, Any]:
        result = conveyor.result(task_id)
        state = result.state
        if state == cv.SUCCESS:
            return {"task_id": task_id, "state": state, "value": result.get()}
        return {"task_id": task_id, "state": state}

    return app


app = create_app()
