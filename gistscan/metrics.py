"""The process's Prometheus metrics: defined once here, moved by the stages, served by `/metrics`.

Names follow Prometheus conventions (`gistscan_` prefix; counters end in `_total`, durations
in `_seconds`, sizes in `_bytes`; prometheus-client adds `_total` to a counter's name). Label
values are small fixed sets, never user input: `host` is `api` (GitHub's REST API), `raw`
(the raw file host) or `git`; `status` is an HTTP status code, or `error` when no answer
came (a network failure or a timeout). The README's "Operating gistscan" says what each
answers. They live in prometheus-client's default registry, so a library user who already
exports Prometheus metrics gets these too.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# -- searches and requests (the server) ----------------------------------------------------------

SEARCHES = Counter(
    "gistscan_searches",
    "Searches by outcome: complete; partial (ended early: max matches, a deadline, the"
    " drain's cut, error records); refused (an error status before any record: `status`"
    " says which); disconnected (the client left); stalled (the client stopped reading and"
    " was cut); failed (a server fault).",
    ["outcome", "status"],
)
SEARCHES_RUNNING = Gauge("gistscan_searches_running", "Searches running now.")
FIRST_RECORD_SECONDS = Histogram(
    "gistscan_search_first_record_seconds",
    "Seconds from a search's request to its first record.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SEARCH_SECONDS = Histogram(
    "gistscan_search_duration_seconds",
    "Seconds from a search's request to its end (its summary, or the client leaving).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
ERROR_RECORDS = Counter(
    "gistscan_error_records",
    "Error records sent by searches, by code (regex_timeout, carry_overflow,"
    " deadline_exceeded, upstream_error, rate_limited, ...).",
    ["code"],
)
HTTP_REQUESTS = Counter(
    "gistscan_http_requests",
    "Requests answered, by route template (`none`: no route matched), method and status.",
    ["route", "method", "status"],
)
DRAINING = Gauge("gistscan_draining", "1 while the server drains before it stops (/readyz: 503).")

# -- upstream (GitHub) ---------------------------------------------------------------------------

UPSTREAM_REQUESTS = Counter(
    "gistscan_upstream_requests",
    "Requests sent upstream, by host kind and the status answered (`error`: none).",
    ["host", "status"],
)
UPSTREAM_RETRIES = Counter(
    "gistscan_upstream_retries", "Requests tried again after a transient failure.", ["host"]
)
RATE_LIMIT_WAITS = Counter(
    "gistscan_rate_limit_waits",
    "Times an upstream told us to wait (a rate limit or Retry-After), by host kind.",
    ["host"],
)
GITHUB_RATELIMIT_REMAINING = Gauge(
    "gistscan_github_ratelimit_remaining",
    "GitHub's last seen x-ratelimit-remaining (API requests left in the window).",
)
GITHUB_RATELIMIT_RESET = Gauge(
    "gistscan_github_ratelimit_reset_timestamp_seconds",
    "GitHub's last seen x-ratelimit-reset: when the window resets, in Unix seconds.",
)
DOWNLOADED_BYTES = Counter(
    "gistscan_downloaded_bytes", "File bytes received, by host kind (raw, git).", ["host"]
)
GIT_CLONES = Counter(
    "gistscan_git_clones", "Shallow git clones of huge gists, by result (ok, failed).", ["result"]
)

# -- cache ---------------------------------------------------------------------------------------

CACHE_LOOKUPS = Counter(
    "gistscan_cache_lookups",
    "Cache lookups by kind (page, raw, not_found) and result (hit, miss).",
    ["kind", "result"],
)

# -- scanning ------------------------------------------------------------------------------------

SCANNED_BYTES = Counter("gistscan_scanned_bytes", "File bytes fed to the scanner (cache hits too).")

# -- the shared level (Redis; only moved when GISTSCAN_REDIS_URL is set) -------------------------

REDIS_UP = Gauge(
    "gistscan_redis_up",
    "1 while the shared Redis answers; 0 during an outage (the replica serves from its memory"
    " cache and GitHub meanwhile), and when no Redis is configured.",
)
REDIS_OUTAGES = Counter(
    "gistscan_redis_outages", "Outages of the shared Redis seen: down, too slow, or refusing."
)
REDIS_ERRORS = Counter(
    "gistscan_redis_errors",
    "Redis commands that failed, by kind (connection, timeout, response).",
    ["kind"],
)
REDIS_LOOKUPS = Counter(
    "gistscan_redis_lookups",
    "Lookups in Redis after a memory miss, by kind (page, raw, not_found) and result (hit:"
    " answered without GitHub; miss); none while Redis is down.",
    ["kind", "result"],
)
