"""The OpenAPI 3.1 description of the HTTP API, written by hand to match web.py (a test checks
every route is described)."""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "An error, with a message safe to show",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
       "description": "The task id"}
_AUTH = {"401": _ERROR, "403": _ERROR}

SCHEMA: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "conveyor HTTP API",
        "version": "1",
        "description": "Enqueue tasks by name, read their results, see queues, workers and "
                       "dead letters. With a token, send `Authorization: Bearer <token>`. "
                       "Every change is a POST with a JSON body (`Content-Type: "
                       "application/json`). See docs/protocol.md.",
    },
    "security": [{"bearer": []}, {}],
    "paths": {
        "/api/tasks": {"post": {
            "operationId": "enqueue",
            "summary": "Enqueue a registered task by name",
            "requestBody": _body("EnqueueRequest"),
            "responses": {"201": _ok("Enqueued", "Enqueued"), "400": _ERROR, "415": _ERROR,
                          "503": _ERROR, **_AUTH},
        }, "get": {
            "operationId": "listTasks",
            "summary": "Tasks by state, queue and name, a page at a time",
            "description": "With no state: running, ready, scheduled, dead, then finished "
                           "tasks. Orders: ready in claim order, scheduled by due time, "
                           "running by lease end, dead oldest first, finished newest first. "
                           "A finished task has only its stored result: it records no queue "
                           "(so `queue` cannot filter success or revoked, and with failure "
                           "lists dead letters only) and, for a success, no task name (task "
                           "\"?\"). Filtering by name decodes at most 2,000 tasks per "
                           "request.",
            "parameters": [
                {"name": "state", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": [
                     "ready", "scheduled", "running", "success", "failure", "revoked",
                     "dead", "pending", "started", "progress"]},
                 "description": "Any case; pending = ready, started/progress = running"},
                {"name": "queue", "in": "query", "required": False,
                 "schema": {"type": "string"}},
                {"name": "name", "in": "query", "required": False,
                 "schema": {"type": "string"}, "description": "A task name, exactly"},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                {"name": "offset", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "default": 0}}],
            "responses": {"200": _ok("TaskList"), "400": _ERROR, "503": _ERROR, **_AUTH},
        }},
        "/api/tasks/{id}": {"get": {
            "operationId": "getTask",
            "summary": "A task's state, and its result or error once finished",
            "parameters": [_ID, {
                "name": "wait", "in": "query", "required": False,
                "schema": {"type": "number", "minimum": 0, "maximum": 60},
                "description": "Wait up to this many seconds for the task to finish "
                               "(long-polling); the answer then has the state at that time"}],
            "responses": {"200": _ok("TaskOutcome"), "400": _ERROR, "503": _ERROR, **_AUTH},
        }},
        "/api/tasks/{id}/detail": {"get": {
            "operationId": "getTaskDetail",
            "summary": "Everything stored about a task: arguments, attempts, times, result "
                       "or error, progress, dead-letter reason and a timeline",
            "parameters": [_ID],
            "responses": {"200": _ok("TaskDetail"), "404": _ERROR, "503": _ERROR, **_AUTH},
        }},
        "/api/tasks/{id}/revoke": {"post": {
            "operationId": "revokeTask",
            "summary": "Revoke a task: it never runs, or with terminate a running one stops",
            "parameters": [_ID],
            "requestBody": _body("RevokeRequest", required=False),
            "responses": {"200": _ok("Revoked"), "400": _ERROR, "415": _ERROR, "503": _ERROR,
                          **_AUTH},
        }},
        "/api/queues": {"get": {
            "operationId": "listQueues",
            "summary": "Every queue with its ready, scheduled and running counts",
            "responses": {"200": _ok("Queues"), "503": _ERROR, **_AUTH},
        }},
        "/api/workers": {"get": {
            "operationId": "listWorkers",
            "summary": "Workers with a live heartbeat",
            "responses": {"200": _ok("Workers"), "503": _ERROR, **_AUTH},
        }},
        "/api/dead": {"get": {
            "operationId": "listDead",
            "summary": "Dead letters, oldest first",
            "parameters": [
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                {"name": "offset", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "default": 0}}],
            "responses": {"200": _ok("DeadLetters"), "400": _ERROR, "503": _ERROR, **_AUTH},
        }},
        "/api/dead/retry": {"post": {
            "operationId": "retryDead",
            "summary": "Put dead letters back in their queue",
            "requestBody": _body("RetryRequest"),
            "responses": {"200": _ok("Retried"), "400": _ERROR, "415": _ERROR, "503": _ERROR,
                          **_AUTH},
        }},
        "/api/openapi.json": {"get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": {"description": "The OpenAPI document",
                                  "content": {"application/json": {"schema": {
                                      "type": "object"}}}}, **_AUTH},
        }},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
            "EnqueueRequest": {
                "type": "object", "required": ["task"], "additionalProperties": False,
                "properties": {
                    "task": {"type": "string", "minLength": 1,
                             "description": "A registered task's name"},
                    "args": {"type": "array", "default": []},
                    "kwargs": {"type": "object", "default": {}},
                    "options": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "countdown": {"type": ["number", "null"], "minimum": 0,
                                          "description": "Do not run before this many seconds"},
                            "eta": {"description": "Do not run before: ISO 8601 with a "
                                                   "timezone, or Unix seconds",
                                    "type": ["string", "number", "null"]},
                            "queue": {"type": ["string", "null"]},
                            "priority": {"type": ["integer", "null"],
                                         "description": "Larger runs first"},
                            "task_id": {"type": ["string", "null"],
                                        "description": "Your own id for the task"},
                        },
                    },
                },
            },
            "Enqueued": {"type": "object", "required": ["id", "task"],
                         "properties": {"id": {"type": "string"}, "task": {"type": "string"}}},
            "TaskOutcome": {
                "type": "object", "required": ["id", "state", "ready"],
                "properties": {
                    "id": {"type": "string"},
                    "state": {"type": "string", "enum": [
                        "PENDING", "SCHEDULED", "STARTED", "PROGRESS", "RETRY", "SUCCESS",
                        "FAILURE", "REVOKED"]},
                    "ready": {"type": "boolean", "description": "True once finished"},
                    "result": {"description": "The value returned (state SUCCESS)"},
                    "error": {"type": "object", "required": ["type", "message"],
                              "properties": {"type": {"type": "string"},
                                             "message": {"type": "string"},
                                             "traceback": {"type": ["string", "null"]}}},
                    "progress": {"type": "object",
                                 "description": "The latest progress report while it runs"},
                },
            },
            "TaskList": {
                "type": "object", "required": ["tasks", "limit", "offset"],
                "properties": {
                    "state": {"type": ["string", "null"]},
                    "queue": {"type": ["string", "null"]},
                    "name": {"type": ["string", "null"]},
                    "limit": {"type": "integer"}, "offset": {"type": "integer"},
                    "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskRow"}},
                },
            },
            "TaskRow": {
                "type": "object", "required": ["id", "task", "state"],
                "properties": {
                    "id": {"type": "string"},
                    "task": {"type": "string",
                             "description": "\"?\" when unknown (see decode_error)"},
                    "state": {"type": "string"},
                    "queue": {"type": ["string", "null"]},
                    "attempts": {"type": ["integer", "null"]},
                    "priority": {"type": ["integer", "null"]},
                    "args": {"type": "array"}, "kwargs": {"type": "object"},
                    "enqueued_at": {"type": ["number", "null"]},
                    "ready_at": {"type": ["number", "null"]},
                    "finished_at": {"type": ["number", "null"]},
                    "worker": {"type": ["string", "null"]},
                    "dead_reason": {"type": ["string", "null"]},
                    "decode_error": {"type": ["string", "null"]},
                },
            },
            "TaskDetail": {
                "type": "object", "required": ["id", "task", "state", "timeline"],
                "properties": {
                    "id": {"type": "string"}, "task": {"type": "string"},
                    "state": {"type": "string"}, "queue": {"type": ["string", "null"]},
                    "priority": {"type": ["integer", "null"]},
                    "attempts": {"type": ["integer", "null"]},
                    "args": {"type": "array"}, "kwargs": {"type": "object"},
                    **{k: {"type": ["number", "null"]} for k in (
                        "enqueued_at", "ready_at", "started_at", "finished_at",
                        "lease_until", "expires_at", "result_expires_at")},
                    "worker": {"type": ["string", "null"]},
                    "result": {"description": "The value returned (state SUCCESS)"},
                    "error": {"type": "object", "required": ["type", "message"],
                              "properties": {"type": {"type": "string"},
                                             "message": {"type": "string"},
                                             "traceback": {"type": ["string", "null"]}}},
                    "progress": {"type": ["object", "null"]},
                    "dead_reason": {"type": ["string", "null"]},
                    "decode_error": {"type": ["string", "null"]},
                    "timeline": {"type": "array", "items": {
                        "type": "object", "required": ["time", "event"],
                        "properties": {"time": {"type": "number"},
                                       "event": {"type": "string"}}}},
                },
            },
            "RevokeRequest": {"type": "object", "additionalProperties": False,
                              "properties": {"terminate": {"type": "boolean", "default": False}}},
            "Revoked": {"type": "object", "required": ["id", "revoked"],
                        "properties": {"id": {"type": "string"},
                                       "revoked": {"type": "boolean"}}},
            "Queues": {"type": "object", "required": ["queues"], "properties": {"queues": {
                "type": "array", "items": {
                    "type": "object", "required": ["name", "ready", "scheduled", "running"],
                    "properties": {"name": {"type": "string"}, "ready": {"type": "integer"},
                                   "scheduled": {"type": "integer"},
                                   "running": {"type": "integer"}}}}}},
            "Workers": {"type": "object", "required": ["workers"], "properties": {"workers": {
                "type": "array", "items": {
                    "type": "object", "required": ["id", "node", "last_seen", "age"],
                    "properties": {
                        "id": {"type": "string"}, "node": {"type": "string"},
                        "pid": {"type": ["integer", "null"]}, "pool": {"type": "string"},
                        "concurrency": {"type": ["integer", "null"]},
                        "queues": {"type": ["array", "null"], "items": {"type": "string"}},
                        "last_seen": {"type": "number"},
                        "age": {"type": "number", "description": "Seconds since the last "
                                                                 "heartbeat"},
                        "started_at": {"type": ["number", "null"]}}}}}},
            "DeadLetters": {
                "type": "object", "required": ["count", "dead"],
                "properties": {
                    "count": {"type": "integer"}, "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "dead": {"type": "array", "items": {
                        "type": "object",
                        "required": ["id", "queue", "task", "reason", "died_at", "attempts"],
                        "properties": {
                            "id": {"type": "string"}, "queue": {"type": "string"},
                            "task": {"type": "string"}, "args": {"type": "array"},
                            "kwargs": {"type": "object"}, "reason": {"type": "string"},
                            "died_at": {"type": "number"}, "attempts": {"type": "integer"},
                            "decode_error": {"type": ["string", "null"]}}}}}},
            "RetryRequest": {
                "type": "object", "additionalProperties": False,
                "description": "Either ids or all: true",
                "properties": {"ids": {"type": "array", "items": {"type": "string"}},
                               "all": {"type": "boolean"}}},
            "Retried": {"type": "object", "required": ["retried"],
                        "properties": {"retried": {"type": "array",
                                                   "items": {"type": "string"}}}},
        },
    },
}
