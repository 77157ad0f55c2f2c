"""The exceptions gistscan raises, rooted at one class.

    GistscanError
    ├── UsageError          bad input caught before any request (pattern, user name, option)
    └── UpstreamError       GitHub did not give what was asked; `code` is the record code
        ├── ListingError    the listing of the user's gists failed: the scan cannot go on
        └── FetchError      one file's bytes could not be read: that file gets an error record

Every `UpstreamError` carries the stable snake_case record `code` of docs/records.md (`not_found`,
`rate_limited`, `upstream_error`, `invalid_response`, `too_large`, `deadline_exceeded`), the
HTTP `status` when there was one, `retry_after` (seconds, finite) for rate limits, and the
`url` that failed when it was a connection-level failure (so a front end can say which host it
could not reach). aiohttp's own exceptions are translated into these in `gistscan.github`, the
one module that talks HTTP.
"""

from __future__ import annotations


class GistscanError(Exception):
    """Root of every error gistscan raises on purpose."""


class UsageError(GistscanError):
    """Input refused before any request: the message names the problem."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UpstreamError(GistscanError):
    """GitHub (or the network to it) failed us; `code` says how."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.url = url


class ListingError(UpstreamError):
    """The list of gists could not be read: fatal for the scan."""


class FetchError(UpstreamError):
    """One file could not be read: the scan goes on without it."""


def shown_url(url: str) -> str:
    """`url` as a message may print it: any `user:password@` replaced by `***@` (up to the last
    `@` before the query, so that a password holding `/` or `@` goes too)."""
    scheme, sep, rest = url.partition("://")
    at = rest.split("?", 1)[0].split("#", 1)[0].rfind("@")
    return f"{scheme}://***@{rest[at + 1 :]}" if sep and at >= 0 else url
