"""Incident response artefacts: the playbook and postmortem templates, and the remediation backlog's schema.

A remediation backlog is YAML: a list of items, each with `item` (what to change), `owner_role`
(one of the playbook's roles or a team), `priority` (P0..P3), `linked` (the alert or SLI it
protects: a name from `inferlab.observe.slo`), `due` (YYYY-MM-DD) and optional `status`.
`validate_backlog` checks it against `BACKLOG_SCHEMA` (JSON Schema) and returns one message per
problem, naming the item and field, so a notebook or CI can print them.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import jsonschema
import yaml

from inferlab.observe import slo

TEMPLATES = Path(__file__).parent / "templates"
ROLES = ("incident_commander", "operations", "communications", "scribe", "service_owner", "platform")
SEVERITIES = ("SEV1", "SEV2", "SEV3")
LINKABLE = tuple(sorted({r["alert"] for r in slo.alert_rules()} | set(slo.SLIS) | {"goodput"}))

BACKLOG_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "inferlab remediation backlog",
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["item", "owner_role", "priority", "linked", "due"],
        "properties": {
            "item": {"type": "string", "minLength": 10},
            "owner_role": {"enum": list(ROLES)},
            "priority": {"enum": ["P0", "P1", "P2", "P3"]},
            "linked": {"enum": list(LINKABLE)},
            "due": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
            "status": {"enum": ["open", "in_progress", "done"]},
        },
    },
}


def template(name: str) -> str:
    """A template's text: "playbook", "postmortem" or "backlog"."""
    files = {"playbook": "playbook.md", "postmortem": "postmortem.md", "backlog": "backlog.yml"}
    if name not in files:
        raise ValueError(f"unknown template {name!r}; one of {sorted(files)}")
    return (TEMPLATES / files[name]).read_text()


def validate_backlog(backlog: str | list) -> list[str]:
    """Problems of a backlog (YAML text or the parsed list); [] when it is valid."""
    if isinstance(backlog, str):
        try:
            backlog = yaml.safe_load(backlog)
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: an impossible date such as 2027-02-30
            return [f"not valid YAML: {exc}"]
    if isinstance(backlog, list):  # YAML reads an unquoted date as a date: accept it as written
        backlog = [{k: v.isoformat() if isinstance(v, datetime.date) else v for k, v in item.items()}
                   if isinstance(item, dict) else item for item in backlog]
    problems = []
    for err in sorted(jsonschema.Draft202012Validator(BACKLOG_SCHEMA).iter_errors(backlog), key=lambda e: list(e.path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path) or "the backlog"
        problems.append(f"{where}: {err.message}")
    for i, item in enumerate(backlog if isinstance(backlog, list) else []):
        due = item.get("due") if isinstance(item, dict) else None
        if isinstance(due, str) and len(due) == 10:
            try:
                datetime.date.fromisoformat(due)
            except ValueError:
                problems.append(f"[{i}].due: {due!r} is not a calendar date")
    return problems
