"""Structured logs: one JSON object per line (or plain text), with an event's fields.

log.info("mined", extra={"fields": {"call": "assign", "tx": "0x..", "block": 12}})
"""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()} {fields}".rstrip()


def setup(fmt: str = "json", level: str = "INFO", name: str = "keepers") -> None:
    """Routes the loggers under `name` (a role: keepers, agent) to stderr in `fmt`; idempotent."""
    logger = logging.getLogger(name)
    logger.setLevel(level.upper())
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(sys.stderr))
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
