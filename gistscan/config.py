"""What to search for and how: built once at the edge (CLI, server), validated, then frozen."""

from __future__ import annotations

import datetime
import math
import os
import re
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import regex
from yarl import URL

from gistscan.analysis import unsupported
from gistscan.errors import UsageError, shown_url
from gistscan.filters import FileFilter, file_filter

DEFAULT_API_URL = "https://api.github.com"
MAX_PATTERN_LENGTH = 1000
# Upper bounds of the settings that size memory or load: a bound is what makes a setting a
# bound. A chunk is held whole per download in flight; max_carry is the scanner's memory cap
# per file; GitHub's secondary rate limits allow 100 concurrent requests.
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_CARRY_LIMIT = 64 * 1024 * 1024
MAX_CONCURRENCY = 100
MAX_RETRIES = 10
# `regex` copies an item m times for `{m}`: `a{10000000}` costs seconds and gigabytes to
# compile, `a{1000000000}` the whole machine. This bounds the items a pattern unrolls to.
MAX_UNROLLED = 2000

# What keeps a login safe in a URL path: 1-39 ASCII letters, digits and hyphens. GitHub's
# rules for new logins are stricter (no leading, trailing or doubled hyphen), but older
# accounts such as `mees-`, `-Jerry-` and `0----0` exist; GitHub's 404 says the rest.
_LOGIN = re.compile(r"[A-Za-z0-9-]{1,39}")
GIT_PROTOCOLS = frozenset({"https", "http", "git", "ssh", "file"})


def check_username(username: str) -> str:
    """Return `username` when it may be a GitHub login, else raise `UsageError`."""
    if not isinstance(username, str) or not _LOGIN.fullmatch(username):
        raise UsageError(
            f"invalid GitHub user name {username!r}: 1-39 ASCII letters, digits and hyphens",
            field="username",
        )
    return username


def check_api_url(url: str) -> str:
    """Return `url` when it can serve as the GitHub API root, else raise `UsageError`.

    An absolute http:// or https:// URL with a host and a valid port, no query, fragment,
    white space or `user:password@`: checked here so that a typo is one clear line, not a
    traceback at the first request. The message never repeats a password: credentials in
    the URL would be sent as Basic auth and printed in errors and logs; a token goes in
    GITHUB_TOKEN.
    """
    problem = None
    shown = shown_url(url)
    if shown != url:
        problem = "it must not hold a user name or password (give a token with GITHUB_TOKEN)"
    elif not url.startswith(("http://", "https://")):
        problem = "it must start with http:// or https://"
    elif any(c.isspace() or ord(c) < 32 for c in url):
        problem = "it contains white space or a control character"
    else:
        try:
            parsed = URL(url)
            if not parsed.host:
                problem = "it names no host"
            elif parsed.query_string or parsed.fragment:
                problem = "it must not have a query or a fragment"
            elif parsed.port == 0:
                problem = "its port must be from 1 to 65535"
        except ValueError as exc:  # yarl: "Invalid IPv6 URL", "Port out of range 0-65535"
            problem = str(exc)
    if problem:
        raise UsageError(f"invalid API URL {shown!r}: {problem}", field="api_url")
    return url


def compile_pattern(
    pattern: str,
    *,
    ignore_case: bool = False,
    fixed_strings: bool = False,
    word: bool = False,
    max_length: int = MAX_PATTERN_LENGTH,
    max_unrolled: int = MAX_UNROLLED,
) -> regex.Pattern[str]:
    """Compile a user pattern as docs/matching.md says (VERSION0, MULTILINE), or raise
    `UsageError`. `word` (grep's -w) keeps only matches with no word character right
    before or after them.

    Refused before compiling: an empty pattern, one over `max_length` characters, one that
    is not valid Unicode, and one whose `{m,n}` repeats unroll to over `max_unrolled` items.
    Refused after: a construct the chunked scanner cannot honour exactly (reverse matching,
    recursion, `\\G`...: see `gistscan.analysis.unsupported`), named in the message.
    """
    if not isinstance(pattern, str) or not pattern:
        raise UsageError("the pattern is empty", field="pattern")
    if len(pattern) > max_length:
        raise UsageError(
            f"the pattern is {len(pattern)} characters long; the limit is {max_length}",
            field="pattern",
        )
    try:
        pattern.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800")
        raise UsageError(
            "the pattern is not valid Unicode (a lone surrogate)", field="pattern"
        ) from None
    source = regex.escape(pattern) if fixed_strings else pattern
    size = unrolled_size(source)
    if size > max_unrolled:
        raise UsageError(
            f"the pattern's {{m,n}} repeats unroll to about {size} items; the limit is"
            f" {max_unrolled} (use smaller minimum counts)",
            field="pattern",
        )
    flags = regex.VERSION0 | regex.MULTILINE | (regex.IGNORECASE if ignore_case else 0)
    try:
        if word:
            # Compiled alone first: the wrapping could balance a broken `a)|(b`. Look-arounds
            # rather than \b: a pattern may start or end with a non-word character (`-w -x`),
            # and grep's rule is about the neighbours, not about a boundary.
            regex.compile(source, flags)
            source = rf"(?<!\w)(?:{source})(?!\w)"
        compiled = regex.compile(source, flags)
    except Exception as exc:
        # Not only regex.error: an inline `(?V1)` under VERSION0 raises KeyError, say.
        reason = str(exc) if isinstance(exc, regex.error) else f"{type(exc).__name__}: {exc}"
        raise UsageError(f"the pattern does not compile: {reason}", field="pattern") from exc
    construct = unsupported(compiled)
    if construct is not None:
        raise UsageError(
            f"the pattern uses {construct}, which a streaming search cannot honour exactly",
            field="pattern",
        )
    return compiled


_REPEAT_MIN = re.compile(r"\{\s*([0-9]+)")


def unrolled_size(pattern: str) -> int:
    """An upper bound of the items `regex` unrolls `pattern` into (`{m,n}` copies m times).

    Read from the stdlib's parse tree; for syntax only `regex` knows, the coarse bound:
    the pattern's length times the product of every repeat minimum in it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return max(1, _items(list(sre_parse.parse(pattern))))
    except Exception:
        coarse = len(pattern)
        for count in _REPEAT_MIN.findall(pattern):
            coarse *= max(1, int(count[:13]))  # 13 digits: over any limit already
        return coarse


def _items(seq: list[tuple[Any, Any]]) -> int:
    total = 0
    for op, av in seq:
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
            total += max(1, av[0]) * max(1, _items(list(av[2])))
        elif op is sre_c.SUBPATTERN:
            total += _items(list(av[3]))
        elif op is sre_c.BRANCH:
            total += sum(_items(list(alt)) for alt in av[1])
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            total += _items(list(av[1]))
        elif op is sre_c.ATOMIC_GROUP:
            total += _items(list(av))
        elif op is sre_c.GROUPREF_EXISTS:
            total += _items(list(av[1])) + (_items(list(av[2])) if av[2] is not None else 0)
        else:
            total += 1
    return total


MAX_CONTEXT = 1000  # lines of -A/-B/-C: each may be held (cut to 400 characters) per file


@dataclass(frozen=True, slots=True)
class Query:
    """One search: whose gists, what to look for, which files, and how much to report.

    `max_matches` counts matches across the search (`--max-total`, the server's
    `max_matches`); `max_count` counts matching lines per file (`-m`, as grep's);
    `files_with_matches` reports a file's first match only and stops reading it there
    (`-l`). `before_context`/`after_context` ask for `context` records (`-B`/`-A`).
    `globs`, `languages` and `since` narrow what is listed and read (docs/cli.md); `since`
    is ISO 8601, normalized by `normalize_since`.
    """

    username: str
    pattern: str
    ignore_case: bool = False
    fixed_strings: bool = False
    max_matches: int | None = None
    word_regexp: bool = False
    max_count: int | None = None
    files_with_matches: bool = False
    before_context: int = 0
    after_context: int = 0
    globs: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    since: str | None = None

    def compile(self) -> regex.Pattern[str]:
        """The compiled pattern; raises `UsageError` for a bad one."""
        return compile_pattern(
            self.pattern,
            ignore_case=self.ignore_case,
            fixed_strings=self.fixed_strings,
            word=self.word_regexp,
        )

    def file_filter(self) -> FileFilter:
        """The glob and language filters, compiled; raises `UsageError` for a bad one."""
        return file_filter(self.globs, self.languages)

    def validate(self) -> regex.Pattern[str]:
        """Check every field before any request; return the compiled pattern."""
        check_username(self.username)
        for name in ("max_matches", "max_count"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"{name} must be a positive integer", field=name)
        for name in ("before_context", "after_context"):
            if not 0 <= getattr(self, name) <= MAX_CONTEXT:
                raise UsageError(f"{name} must be from 0 to {MAX_CONTEXT} lines", field=name)
        if self.since is not None and normalize_since(self.since) != self.since:
            raise UsageError("since must be normalized with normalize_since()", field="since")
        self.file_filter()
        return self.compile()


def normalize_since(text: str) -> str:
    """An ISO 8601 date or date-time as GitHub's `since` takes it: `YYYY-MM-DDTHH:MM:SSZ`, UTC.

    A date alone means its midnight, a time without an offset UTC. Raises `UsageError`.
    """
    try:
        when = datetime.datetime.fromisoformat(text.strip())
        if when.tzinfo is not None:
            when = when.astimezone(datetime.UTC)  # OverflowError past year 1 or 9999
    except (ValueError, AttributeError, OverflowError):
        raise UsageError(
            f"since must be an ISO 8601 date or date-time (2024-01-31, 2024-01-31T12:00:00Z),"
            f" not {text!r}",
            field="since",
        ) from None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Settings:
    """How a scan runs. Every stage takes what it needs from here as keyword arguments.

    `Settings.from_env()` reads the `GISTSCAN_*` variables of `SETTINGS_ENV` (and
    `GITHUB_TOKEN`), as the command line and the server do.

    Timeouts say their scope: `regex_timeout` is the matching time budget of one file
    (CPU seconds, summed over its chunks); `request_timeout` bounds connecting and each read
    of an HTTP request; `request_total_timeout` one whole request, its retries and waits
    included (wall seconds); `deadline` one whole search (wall seconds). `None` disables each.
    `backoff_max` is the longest single wait before a retry (an upstream asking for longer
    gets its error reported). `max_page_bytes` caps a list page's body, `max_pages` the pages
    of one listing. `git_protocols` is the `:`-separated list of protocols git may clone
    huge gists over (git's GIT_ALLOW_PROTOCOL): `https` only unless widened.
    """

    api_url: str = DEFAULT_API_URL
    # Never in repr (logs, tracebacks, error messages): a token is a credential.
    token: str | None = field(default=None, repr=False)
    concurrency: int = 8
    chunk_size: int = 64 * 1024
    max_carry: int = 1024 * 1024
    regex_timeout: float | None = 2.0
    request_timeout: float | None = 30.0
    request_total_timeout: float | None = 120.0
    deadline: float | None = None
    retries: int = 3
    backoff: float = 0.5
    backoff_max: float = 10.0
    per_page: int = 100
    max_pages: int = 100
    max_page_bytes: int = 8 * 1024 * 1024
    git_protocols: str = "https"
    user_agent: str = "gistscan/0.1 (+https://github.com/gistscan/gistscan)"

    def __post_init__(self) -> None:
        for name, top in (
            ("concurrency", MAX_CONCURRENCY),
            ("chunk_size", MAX_CHUNK_SIZE),
            ("max_carry", MAX_CARRY_LIMIT),
            ("per_page", 100),
        ):
            if not 1 <= getattr(self, name) <= top:
                raise UsageError(f"{name} must be an integer from 1 to {top}", field=name)
        if self.max_pages < 1:
            raise UsageError("max_pages must be a positive integer", field="max_pages")
        if not 0 <= self.retries <= MAX_RETRIES:
            raise UsageError(f"retries must be from 0 to {MAX_RETRIES}", field="retries")
        for name in ("regex_timeout", "request_timeout", "request_total_timeout", "deadline"):
            value = getattr(self, name)
            # An infinite wait would overflow the event loop's timers: None is "no limit".
            infinite = value == math.inf and name != "regex_timeout"
            if value is not None and (not value > 0 or infinite):
                raise UsageError(f"{name} must be a positive number of seconds", field=name)
        for name in ("backoff", "backoff_max"):
            if not 0 <= getattr(self, name) < math.inf:
                raise UsageError(f"{name} must be a number of seconds, 0 or more", field=name)
        if self.max_page_bytes < 1024:
            raise UsageError("max_page_bytes must be at least 1024", field="max_page_bytes")
        protocols = self.git_protocols.split(":")
        if not set(protocols) <= GIT_PROTOCOLS:
            raise UsageError(
                f"git_protocols is a ':'-separated list of {', '.join(sorted(GIT_PROTOCOLS))},"
                f" not {self.git_protocols!r}",
                field="git_protocols",
            )
        check_api_url(self.api_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from environment variables (`SETTINGS_ENV`), then `overrides` (flags win).

        Unset variables keep their defaults. Raises `UsageError` naming the variable (or the
        field, for an override) whose value is wrong.
        """
        values = read_env(SETTINGS_ENV, os.environ if environ is None else environ)
        try:
            return cls(**(values | overrides))
        except UsageError as exc:
            raise blame_variable(exc, SETTINGS_ENV, set(overrides)) from exc


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda raw: None if raw.lower() in ("", "none", "off") else parse(raw)


# Value kind -> (parser, what the parser expects, for an error message).
ENV_KINDS: dict[str, tuple[Callable[[str], Any], str]] = {
    "int": (int, "an integer"),
    "float": (float, "a number"),
    "str": (str, "a string"),
    "token": (lambda raw: raw or None, "a token"),
    # A value that may hold a credential (a Redis URL's password): never repeated either.
    "secret": (lambda raw: raw or None, "a secret"),
    "optional_int": (_optional(int), "an integer or 'none'"),
    "optional_float": (_optional(float), "a number of seconds or 'none'"),
}

# Environment variable -> (Settings field, value kind). The README lists them with defaults;
# `gistscan search`, `gistscan serve` and `Settings.from_env()` all read them.
SETTINGS_ENV: dict[str, tuple[str, str]] = {
    "GITHUB_TOKEN": ("token", "token"),
    "GISTSCAN_API_URL": ("api_url", "str"),
    "GISTSCAN_CONCURRENCY": ("concurrency", "int"),
    "GISTSCAN_CHUNK_SIZE": ("chunk_size", "int"),
    "GISTSCAN_MAX_CARRY": ("max_carry", "int"),
    "GISTSCAN_REGEX_TIMEOUT": ("regex_timeout", "optional_float"),
    "GISTSCAN_REQUEST_TIMEOUT": ("request_timeout", "optional_float"),
    "GISTSCAN_REQUEST_TOTAL_TIMEOUT": ("request_total_timeout", "optional_float"),
    "GISTSCAN_RETRIES": ("retries", "int"),
    "GISTSCAN_BACKOFF": ("backoff", "float"),
    "GISTSCAN_BACKOFF_MAX": ("backoff_max", "float"),
    "GISTSCAN_PER_PAGE": ("per_page", "int"),
    "GISTSCAN_MAX_PAGES": ("max_pages", "int"),
    "GISTSCAN_MAX_PAGE_BYTES": ("max_page_bytes", "int"),
    "GISTSCAN_GIT_PROTOCOLS": ("git_protocols", "str"),
    "GISTSCAN_USER_AGENT": ("user_agent", "str"),
}


def read_env(table: Mapping[str, tuple[str, str]], environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields `table` maps from the variables set in `environ`, parsed by their kind.

    Raises `UsageError` naming the variable whose value does not parse.
    """
    values: dict[str, Any] = {}
    for variable, (name, kind) in table.items():
        raw = environ.get(variable)
        if raw is None:
            continue
        parse, expected = ENV_KINDS[kind]
        try:
            values[name] = parse(raw.strip())
        except ValueError:
            # The token's value is never repeated in a message.
            shown = "..." if kind in ("token", "secret") else repr(raw)
            raise UsageError(f"{variable}={shown}: expected {expected}", field=variable) from None
    return values


def blame_variable(
    exc: UsageError, table: Mapping[str, tuple[str, str]], given: Collection[str] = ()
) -> UsageError:
    """`exc` (raised for a field) reworded to name the variable that set that field."""
    if exc.field in given:
        return exc
    variable = next((v for v, (name, _) in table.items() if name == exc.field), None)
    if variable is None:
        return exc
    return UsageError(f"{variable}: {exc.message}", field=variable)
