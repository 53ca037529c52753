"""The server's OpenAPI 3.0 description (GET /openapi.json), built from `openai_api`'s field tables.

One source: the fields a route accepts are the fields its parser accepts; the fuzz tests
draw request bodies from this document, so a field added to the parser is fuzzed too.
"""

from __future__ import annotations

from inferlab.serving.openai_api import CHAT_FIELDS, COMPLETION_FIELDS, REQUIRED

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": "string", "nullable": True},
    "code": {"type": "integer"}}}}}


def _errors(*statuses: int) -> dict:
    return {str(s): {"description": "OpenAI error object", "content": {"application/json": {"schema": _ERROR}}}
            for s in statuses}


def _post(summary: str, fields: dict, required: list[str]) -> dict:
    schema = {"type": "object", "additionalProperties": False, "required": required, "properties": fields}
    return {"post": {"summary": summary, "requestBody": {"required": True, "content": {
        "application/json": {"schema": schema}}}, "responses": {
        "200": {"description": "the completion (JSON), or Server-Sent Events when stream is true",
                "content": {"application/json": {"schema": {"type": "object"}},
                            "text/event-stream": {"schema": {"type": "string"}}}},
        **_errors(400, 404, 413, 415, 429, 500, 503)}}}


def _get(summary: str, *errors: int) -> dict:
    return {"get": {"summary": summary, "responses": {
        "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
        **_errors(*errors)}}}


def openapi_document(model_name: str) -> dict:
    """The OpenAPI 3.0 document of the server serving `model_name`."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "inferlab serve", "version": "1", "description": f"OpenAI-compatible server for {model_name}"},
        "paths": {
            "/v1/completions": _post("text completion", COMPLETION_FIELDS, REQUIRED["completions"]),
            "/v1/chat/completions": _post("chat completion", CHAT_FIELDS, REQUIRED["chat"]),
            "/v1/models": _get("the served model"),
            "/health": _get("liveness of the engine loop", 503),
            "/ready": _get("readiness: the loop is alive and admitting requests", 503),
            "/stats": _get("counters: requests, aborts, errors, rejections, free KV blocks"),
        },
    }
