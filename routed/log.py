"""Structured logging: one event per line, `event=name key=value ...`.

`event()` builds the message; `setup()` installs a formatter that prefixes time,
level and logger in the same key=value form, or emits JSON lines.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from bgp.events import Event, event, value_text

__all__ = ["Event", "JsonFormatter", "KeyValueFormatter", "event", "setup"]


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"ts={stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()} logger={record.name} "
        message = record.getMessage()
        line += message if isinstance(record.msg, Event) else f"msg={value_text(message)}"
        if record.exc_info:
            line += f" exc={value_text(self.formatException(record.exc_info))}"
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(record.msg, Event):
            data.update(
                {k: v if isinstance(v, int | float | bool) else str(v) for k, v in record.msg.fields.items()}
            )
        else:
            data["msg"] = record.getMessage()
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def setup(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pyroute2 logs internal chatter at warning level on expected conditions.
    logging.getLogger("pyroute2").setLevel(logging.ERROR)
