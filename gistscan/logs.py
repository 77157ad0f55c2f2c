"""Log lines an operator can ship: one JSON object per line on stderr, each with its request id.

Every line has `time` (UTC, ISO 8601), `level`, `logger` and `message`; a line logged while
a request is handled also has that request's `request_id`; structured fields passed as
`extra={"fields": {...}}` are added as they are. `text` format keeps the same content on
one readable line for a terminal.

What is never logged (the README's "Operating gistscan" promises it): a search pattern (a
search names its pattern by `pattern_hash`, a short keyed hash), a query string, a request
body, a token. Callers log route templates, not raw paths with their queries, and only the
fields they choose.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import re
import secrets
import sys
import uuid
from contextvars import ContextVar
from typing import Any, Literal

import orjson

# The id of the request being handled; tasks a handler starts inherit it (contextvars).
REQUEST_ID: ContextVar[str | None] = ContextVar("gistscan_request_id", default=None)

# A client's X-Request-Id is echoed and logged only when it is short and plain, so it can
# neither forge a log line nor carry a secret-sized blob into every line of a request.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

LogFormat = Literal["json", "text"]


def request_id(given: str | None) -> str:
    """The client's `X-Request-Id` when it is a plain token of at most 128 characters,
    else a new random one (32 hex digits)."""
    if given is not None and _SAFE_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


# A key of this process's own: the same pattern gets the same name in one server's logs, yet
# nobody holding the logs can check a guess (a pattern is often the very secret searched for).
_PATTERN_KEY = secrets.token_bytes(32)


def pattern_hash(pattern: str) -> str:
    """How logs name a pattern (never by its text): the first 12 hex digits of its
    HMAC-SHA256 under a random key made when the process starts."""
    data = pattern.encode("utf-8", "surrogatepass")
    return hmac.new(_PATTERN_KEY, data, hashlib.sha256).hexdigest()[:12]


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    rid = getattr(record, "request_id", None) or REQUEST_ID.get()
    if rid is not None:
        fields["request_id"] = rid
    extra = getattr(record, "fields", None)
    if isinstance(extra, dict):
        fields.update(extra)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...` on one line (a traceback below it)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        pairs = " ".join(f"{key}={value}" for key, value in _fields(record).items())
        return f"{line} {pairs}" if pairs else line


def _no_request_data(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it could not parse with the parser's exception, whose text
    holds the start of the raw request line (the query string, so the pattern): keep only
    the exception's type."""
    if record.name.startswith("aiohttp.") and record.exc_info:
        error = record.exc_info[0]
        record.exc_info = None
        record.exc_text = None
        record.fields = {"error": error.__name__ if error else "unknown"}
    return True


def setup(log_format: LogFormat = "json", level: int = logging.INFO) -> None:
    """Send every log line to stderr in `log_format` (replacing the root's handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_no_request_data)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's own access log writes the raw request line, query string included: ours
    # (server.access_log) replaces it.
    logging.getLogger("aiohttp.access").disabled = True
