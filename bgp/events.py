"""Structured log events: one event per line, `event=name key=value ...`, built by `event()`.

Shared by `bgp` and `routed` (which formats and emits them: routed/log.py); here so that `bgp`
imports nothing of `routed`.
"""

from __future__ import annotations

import json
from typing import Any


def value_text(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


class Event(str):
    """A log message that also keeps its fields, so the JSON formatter can emit them."""

    fields: dict[str, Any]

    def __new__(cls, name: str, fields: dict[str, Any]) -> Event:
        text = " ".join([f"event={name}", *(f"{k}={value_text(v)}" for k, v in fields.items())])
        obj = super().__new__(cls, text)
        obj.fields = {"event": name, **fields}
        return obj


def event(name: str, **fields: Any) -> Event:
    return Event(name, fields)
