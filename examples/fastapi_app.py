"""FastAPI with conveyor: enqueue from async endpoints without blocking the event loop.

    pip install fastapi uvicorn 'conveyor'
    cd examples
    conveyor worker fastapi_app -c 4 --pool thread     # one terminal: the worker
    uvicorn fastapi_app:api                             # another: the web app

    curl -X POST localhost:8000/thumbnails/42           # {"task_id": "..."}
    curl localhost:8000/tasks/<task_id>?wait=5          # {"state": "SUCCESS", "value": ...}

`await task.adelay(...)` and `await result.aget(...)` run the backend calls in a thread, so
a slow backend or a long wait never stalls other requests. The lifespan closes the app's
backend connections when the server shuts down.

The backend URL comes from CONVEYOR_URL; without it, `fastapi.db` beside this file (the web
app and the worker must share it, so both import this module as `fastapi_app`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException

import conveyor
from conveyor import Conveyor

DEFAULT_URL = "sqlite:///" + str(Path(__file__).resolve().with_name("fastapi.db"))

app = Conveyor(os.environ.get("CONVEYOR_URL") or DEFAULT_URL)


@app.task(retries=2)
def make_thumbnail(image_id: int) -> dict[str, Any]:
    """Stands in for real work (resizing an image)."""
    return {"image_id": image_id, "thumbnail": f"/thumbs/{image_id}.jpg"}


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    yield
    app.close()  # close the backend's connections on shutdown


api = FastAPI(title="thumbnails", lifespan=lifespan)


@api.post("/thumbnails/{image_id}", status_code=202)
async def request_thumbnail(image_id: int) -> dict[str, str]:
    result = await make_thumbnail.adelay(image_id)
    return {"task_id": result.id}


@api.get("/tasks/{task_id}")
async def task_status(task_id: str, wait: float = 0.0) -> dict[str, Any]:
    result = app.result(task_id)
    if wait > 0:
        try:
            value = await result.aget(timeout=min(wait, 30.0))
        except conveyor.TimeoutError:
            return {"task_id": task_id, "state": result.state}
        except conveyor.TaskFailed as exc:
            raise HTTPException(500, f"{exc.exc_type}: {exc.exc_message}") from None
        return {"task_id": task_id, "state": "SUCCESS", "value": value}
    state = await _state(result)
    return {"task_id": task_id, "state": state}


async def _state(result: conveyor.Result) -> str:
    return await asyncio.to_thread(lambda: result.state)
