"""The OpenAPI 3.1 description of the server (`GET /openapi.json`), limits taken from its config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gistscan import __version__
from gistscan.filters import MAX_FILTER_LENGTH, MAX_FILTERS

if TYPE_CHECKING:
    from gistscan.server import ServerConfig

MAX_INT = 2**31 - 1  # server.MAX_INT (a test keeps them equal; importing it would be a cycle)
JSON = "application/json"
NDJSON = "application/x-ndjson"
GITHUB_MAX_PER_PAGE = 100


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _ref(schema)}},
    }
    if retry_after:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return response


def _schemas(config: ServerConfig) -> dict[str, Any]:
    string = {"type": "string"}
    count = {"type": "integer", "minimum": 0}
    match_fields = {
        "gist_id": string,
        "filename": string,
        "line_number": {"type": "integer", "minimum": 1},
        "column": {"type": "integer", "minimum": 1},
        "line": {"type": "string", "maxLength": 400},
        "match": string,
        "html_url": string,
        "raw_url": string,
    }
    error_fields = {
        "gist_id": {"type": ["string", "null"]},
        "filename": {"type": ["string", "null"]},
        "code": {
            "type": "string",
            "description": "snake_case: regex_timeout, carry_overflow, deadline_exceeded,"
            " upstream_error, rate_limited, not_found, invalid_response, too_large, ...",
        },
        "message": string,
    }
    context_fields = {
        "gist_id": string,
        "filename": string,
        "line_number": {"type": "integer", "minimum": 1},
        "line": {"type": "string", "maxLength": 400},
    }
    summary_fields = {
        "username": string,
        "pattern": string,
        "gists": count,
        "files": count,
        "skipped": count,
        "filtered": {
            "type": "integer",
            "minimum": 0,
            "description": "files left out by the glob and language filters, never requested",
        },
        "bytes": {
            "type": "integer",
            "minimum": 0,
            "description": "bytes this search downloaded from GitHub, not bytes scanned: files"
            " served from the cache count 0",
        },
        "matches": count,
        "errors": count,
        "complete": {"type": "boolean"},
        "elapsed_ms": count,
    }

    def record(fields: dict[str, Any], kind: str | None, description: str) -> dict[str, Any]:
        properties = {"type": {"const": kind}, **fields} if kind else dict(fields)
        return {
            "type": "object",
            "description": description,
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }

    return {
        "MatchRecord": record(match_fields, "match", "One match (docs/records.md)."),
        "ContextRecord": record(
            context_fields,
            "context",
            "A line around a matching line, sent only when context lines are asked for (the"
            " command line's -A/-B/-C; these routes do not ask for them). `line` is cut to"
            " its first 400 characters.",
        ),
        "ErrorRecord": record(error_fields, "error", "A file (or, ids null, the listing) failed."),
        "SummaryRecord": record(summary_fields, "summary", "The last record of every search."),
        "Record": {
            "description": "One NDJSON line.",
            "oneOf": [
                _ref("MatchRecord"),
                _ref("ContextRecord"),
                _ref("ErrorRecord"),
                _ref("SummaryRecord"),
            ],
        },
        "Match": record(match_fields, None, "A match record without `type`."),
        "Error": record(error_fields, None, "An error record without `type`."),
        "Summary": record(summary_fields, None, "The summary record without `type`."),
        "SearchRequest": {
            "type": "object",
            "properties": {
                "username": _ref("Username"),
                "pattern": _pattern(config),
                "ignore_case": {"type": "boolean", "default": False},
                "fixed_strings": {"type": "boolean", "default": False},
                "max_matches": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": MAX_INT,
                    "description": "stop after this many matches; null: no limit. A buffered"
                    f" (JSON) answer stops at {config.max_buffered_matches} anyway.",
                },
                "glob": {
                    "type": "array",
                    "items": _glob(),
                    "maxItems": MAX_FILTERS,
                    "description": "only files whose name matches (`!GLOB` excludes; the last"
                    " glob that matches wins; see docs/cli.md)",
                },
                "language": {
                    "type": "array",
                    "items": _language(),
                    "maxItems": MAX_FILTERS,
                    "description": "only files GitHub lists in one of these languages (any case)",
                },
                "since": _since(),
            },
            "required": ["username", "pattern"],
            "additionalProperties": False,
            "description": "Unknown fields and repeated keys are refused (400).",
        },
        "SearchResult": {
            "type": "object",
            "properties": {
                "status": {"const": "success"},
                "username": string,
                "pattern": string,
                "matches": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "pattern": "^https://gist\\.github\\.com/[^/]+/[^/]+$",
                    },
                    "uniqueItems": True,
                    "description": "https://gist.github.com/{username}/{gist_id} of each"
                    " matching gist, once, in the order of its first match",
                },
                "details": {"type": "array", "items": _ref("Match")},
                "errors": {"type": "array", "items": _ref("Error")},
                "summary": _ref("Summary"),
            },
            "required": [
                "status",
                "username",
                "pattern",
                "matches",
                "details",
                "errors",
                "summary",
            ],
            "additionalProperties": False,
        },
        "Problem": {
            "type": "object",
            "properties": {
                "status": {"const": "error"},
                "error": {
                    "type": "string",
                    "description": "invalid_json, invalid_request, invalid_username,"
                    " invalid_pattern, body_too_large, unsupported_media_type, not_found,"
                    " rate_limited, upstream_error, invalid_response, too_many_searches,"
                    " too_many_searches_from_client, shutting_down, route_not_found,"
                    " method_not_allowed, internal_error",
                },
                "message": string,
                "field": {"type": "string", "description": "the input at fault, when one is"},
            },
            "required": ["status", "error", "message"],
            "additionalProperties": False,
        },
        "ListProblem": {
            "type": "object",
            "properties": {
                "error": {
                    "enum": [
                        "invalid_request",
                        "not_found",
                        "rate_limited",
                        "upstream_error",
                        "invalid_response",
                        "too_large",
                        "deadline_exceeded",
                        "too_many_searches",
                        "too_many_searches_from_client",
                        "shutting_down",
                    ]
                },
                "message": string,
            },
            "required": ["error", "message"],
            "additionalProperties": False,
        },
        "Gist": {
            "type": "object",
            "description": "A gist object exactly as GitHub lists it (base-gist).",
            "properties": {
                "id": string,
                "html_url": string,
                "files": {"type": "object"},
            },
            "required": ["id", "html_url", "files"],
        },
        "Health": {
            "type": "object",
            "properties": {"status": {"const": "ok"}},
            "required": ["status"],
            "additionalProperties": False,
        },
        "Username": {
            "type": "string",
            "pattern": "^[A-Za-z0-9-]{1,39}$",
            "description": "a GitHub login: 1-39 ASCII letters, digits and hyphens (older"
            " accounts have leading, trailing or doubled hyphens); GitHub's 404 says the rest",
        },
    }


def _pattern(config: ServerConfig) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": config.max_pattern_length,
        "format": "regex",
        "description": "a `regex` (VERSION0, MULTILINE) pattern that compiles; its {m,n}"
        f" repeats may unroll to at most {config.max_pattern_unrolled} items",
    }


# A glob or language is more than `!`, spaces and tabs (filters.file_filter).
_NOT_BLANK = "[^! \t]"


def _glob() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "glob",  # ripgrep's rules (docs/cli.md): a bad one is refused with 400
        "minLength": 1,
        "maxLength": MAX_FILTER_LENGTH,
        "pattern": _NOT_BLANK,
        "examples": ["*.py"],
    }


def _language() -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_FILTER_LENGTH,
        "pattern": _NOT_BLANK,
        "examples": ["Python"],
    }


# What `since` takes, as a schema a generator can honour: an RFC 3339 date or date-time
# (the formats) that Python's datetime also reads (the patterns: years from 1, seconds to
# 59, at most 6 fractional digits, an upper-case T and Z).
_DATE = r"(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}"
_SINCE_FORMATS = [
    {"format": "date", "pattern": f"^{_DATE}$"},
    {
        "format": "date-time",
        "pattern": f"^{_DATE}T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{{1,6}})?"
        "(Z|[+-][0-2][0-9]:[0-5][0-9])$",
    },
]


def _since() -> dict[str, Any]:
    return {
        "type": "string",
        "anyOf": _SINCE_FORMATS,
        "description": "only gists updated since then (ISO 8601 date or date-time, UTC when"
        " no offset is given; years 0001-9999 once in UTC, else 400); passed to GitHub, so"
        " older gists are not even listed",
        "examples": ["2024-01-31", "2024-01-31T12:00:00Z"],
    }


def _query_bool(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"enum": ["true", "false", "1", "0"], "default": "false"},
    }


TOO_MANY = (
    "GitHub's rate limit is exhausted, under the server's reserve, or GitHub asked us to slow"
    " down (rate_limited: Retry-After says until when; a search served from the cache still"
    " runs), or this client already runs as many searches as it may"
    " (too_many_searches_from_client)."
)
BUSY = (
    "Too many searches at once (too_many_searches), or the server is draining before it"
    " stops (shutting_down)."
)


def _stream_responses() -> dict[str, Any]:
    """What both searches answer before (a status) and after (records) the stream starts."""
    return {
        "400": _json("Invalid input, refused before any request to GitHub.", "Problem"),
        "404": _json("No such GitHub user.", "Problem"),
        "429": _json(TOO_MANY, "Problem", retry_after=True),
        "502": _json("GitHub failed or answered nonsense.", "Problem"),
        "503": _json(BUSY, "Problem", retry_after=True),
        "504": _json("The search's deadline passed before GitHub's first page came.", "Problem"),
        "default": _json("Anything else (unknown method, server fault).", "Problem"),
    }


def _user_gists(config: ServerConfig, operation_id: str, summary: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": [
                {
                    "name": "username",
                    "in": "path",
                    "required": True,
                    "schema": _ref("Username"),
                },
                {
                    "name": "page",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
                },
                {
                    "name": "per_page",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": GITHUB_MAX_PER_PAGE,
                    },
                },
            ],
            "responses": {
                "200": {
                    "description": "GitHub's gist objects (cached 60 s). Without"
                    " page/per_page, the whole list (at most"
                    f" {config.max_list_pages} pages of {config.settings.per_page}).",
                    "content": {JSON: {"schema": {"type": "array", "items": _ref("Gist")}}},
                },
                "400": _json("Invalid user name, page or per_page.", "ListProblem"),
                "404": _json("No such GitHub user.", "ListProblem"),
                "429": _json(TOO_MANY, "ListProblem", retry_after=True),
                "502": _json(
                    "GitHub failed (upstream_error), answered something other than a"
                    " list (invalid_response), or the list is longer than the server"
                    " holds (too_large).",
                    "ListProblem",
                ),
                "503": _json(BUSY, "ListProblem", retry_after=True),
                "504": _json("The search deadline passed before the list was read.", "ListProblem"),
                "default": _json("Unknown method, server fault.", "Problem"),
            },
        }
    }


def _plain(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "responses": {**responses, "default": _json("Unknown method.", "Problem")},
        }
    }


def document(config: ServerConfig) -> dict[str, Any]:
    """The whole description, as a JSON-ready dict."""
    ndjson_ok = {
        "description": "The search's records, one JSON object per line, each sent as found;"
        " the summary comes last. Faults after the start arrive as error records.",
        "content": {NDJSON: {"schema": _ref("Record")}},
    }
    search_params = [
        {"name": "username", "in": "path", "required": True, "schema": _ref("Username")},
        {"name": "pattern", "in": "query", "required": True, "schema": _pattern(config)},
        _query_bool("ignore_case", "case-insensitive"),
        _query_bool("fixed_strings", "the pattern is a literal string"),
        {
            "name": "max_matches",
            "in": "query",
            "description": "stop after this many matches",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
        },
        {
            "name": "glob",
            "in": "query",
            "description": "only files whose name matches; repeatable; `!GLOB` excludes (the"
            " last glob that matches wins; see docs/cli.md). Filtered files are never requested.",
            "schema": {"type": "array", "items": _glob(), "maxItems": MAX_FILTERS},
            "style": "form",
            "explode": True,
        },
        {
            "name": "language",
            "in": "query",
            "description": "only files GitHub lists in this language (any case); repeatable",
            "schema": {"type": "array", "items": _language(), "maxItems": MAX_FILTERS},
            "style": "form",
            "explode": True,
        },
        {"name": "since", "in": "query", "schema": _since()},
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gistscan",
            "version": __version__,
            "description": "Search a GitHub user's public gists for a regular expression."
            " Every input is validated before any request to GitHub; unknown query parameters"
            " and body fields are refused.",
        },
        "paths": {
            "/ping": _plain(
                "ping",
                "Liveness, as plain text",
                {
                    "200": {
                        "description": "pong",
                        "content": {"text/plain": {"schema": {"const": "pong\n"}}},
                    }
                },
            ),
            "/healthz": _plain(
                "healthz",
                "Liveness: the process answers",
                {"200": _json("The server is up.", "Health")},
            ),
            "/readyz": _plain(
                "readyz",
                "Readiness: whether to send this server searches",
                {
                    "200": _json("Ready.", "Health"),
                    "503": _json("Draining before it stops (shutting_down).", "Problem"),
                },
            ),
            "/metrics": _plain(
                "metrics",
                "Prometheus metrics, in the text exposition format",
                {
                    "200": {
                        "description": "The process's metrics (the README explains each).",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    }
                },
            ),
            "/docs": _plain(
                "docs",
                "This document as a web page (works with no internet)",
                {
                    "200": {
                        "description": "An HTML page that renders /openapi.json.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            ),
            "/openapi.json": _plain(
                "openapi",
                "This document",
                {
                    "200": {
                        "description": "This document.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            ),
            "/api/v1/users/{username}/search": {
                "get": {
                    "operationId": "searchStream",
                    "summary": "Stream the matches of a search as NDJSON",
                    "parameters": search_params,
                    "responses": {"200": ndjson_ok, **_stream_responses()},
                }
            },
            "/api/v1/search": {
                "post": {
                    "operationId": "search",
                    "summary": "Search; a JSON answer, or NDJSON with Accept: application/x-ndjson",
                    "parameters": [
                        {
                            "name": "Accept",
                            "in": "header",
                            "schema": {"type": "string"},
                            "description": "application/x-ndjson: stream the records",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {JSON: {"schema": _ref("SearchRequest")}},
                    },
                    "responses": {
                        "200": {
                            "description": "The search's answer. Matches stop at"
                            f" {config.max_buffered_matches} in a JSON answer.",
                            "content": {
                                JSON: {"schema": _ref("SearchResult")},
                                NDJSON: {"schema": _ref("Record")},
                            },
                        },
                        "413": _json(f"The body is over {config.max_body_bytes} bytes.", "Problem"),
                        "415": _json(
                            "The body was not sent as Content-Type: application/json.", "Problem"
                        ),
                        **_stream_responses(),
                    },
                }
            },
            "/api/v1/users/{username}/gists": _user_gists(
                config,
                "userGistsByName",
                "The user's public gists (for any login, even one named like a route)",
            ),
            "/{username}": _user_gists(
                config,
                "userGists",
                "The user's public gists: every page followed, or one page",
            ),
        },
        "components": {
            "schemas": _schemas(config),
            "headers": {
                "Retry-After": {
                    "description": "seconds to wait before trying again",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
        },
    }
