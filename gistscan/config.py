"""What to search for and how: built once at the edge (CLI, server), validated, then frozen."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import regex

from gistscan.analysis import unsupported
from gistscan.errors import UsageError

DEFAULT_API_URL = "https://api.github.com"
MAX_PATTERN_LENGTH = 1000
# `regex` copies an item m times for `{m}`: `a{10000000}` costs seconds and gigabytes to
# compile, `a{1000000000}` the whole machine. This bounds the items a pattern unrolls to.
MAX_UNROLLED = 2000

# A GitHub login: 1-39 characters, letters, digits and single hyphens, not at either end.
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")


def check_username(username: str) -> str:
    """Return `username` when it is a valid GitHub login, else raise `UsageError`."""
    if not isinstance(username, str) or not _LOGIN.fullmatch(username):
        raise UsageError(
            f"invalid GitHub user name {username!r}: 1-39 letters, digits and single inner hyphens",
            field="username",
        )
    return username


def compile_pattern(
    pattern: str,
    *,
    ignore_case: bool = False,
    fixed_strings: bool = False,
    max_length: int = MAX_PATTERN_LENGTH,
    max_unrolled: int = MAX_UNROLLED,
) -> regex.Pattern[str]:
    """Compile a user pattern as SPEC §2 says (VERSION0, MULTILINE), or raise `UsageError`.

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


@dataclass(frozen=True, slots=True)
class Query:
    """One search: whose gists, and what to look for."""

    username: str
    pattern: str
    ignore_case: bool = False
    fixed_strings: bool = False
    max_matches: int | None = None

    def compile(self) -> regex.Pattern[str]:
        """The compiled pattern; raises `UsageError` for a bad one."""
        return compile_pattern(
            self.pattern, ignore_case=self.ignore_case, fixed_strings=self.fixed_strings
        )

    def validate(self) -> regex.Pattern[str]:
        """Check every field before any request; return the compiled pattern."""
        check_username(self.username)
        if self.max_matches is not None and self.max_matches < 1:
            raise UsageError("max matches must be a positive integer", field="max_matches")
        return self.compile()


@dataclass(frozen=True, slots=True)
class Settings:
    """How a scan runs. Every stage takes what it needs from here as keyword arguments.

    Timeouts say their scope: `regex_timeout` is the matching time budget of one file
    (CPU seconds, summed over its chunks); `request_timeout` bounds one HTTP request
    (connect and each read); `deadline` bounds one whole search (wall seconds). `None`
    disables each.
    """

    api_url: str = DEFAULT_API_URL
    token: str | None = None
    concurrency: int = 8
    chunk_size: int = 64 * 1024
    max_carry: int = 1024 * 1024
    regex_timeout: float | None = 2.0
    request_timeout: float | None = 30.0
    deadline: float | None = None
    retries: int = 3
    backoff: float = 0.5
    per_page: int = 100
    user_agent: str = "gistscan/0.1 (+https://github.com/gistscan/gistscan)"

    def __post_init__(self) -> None:
        for name in ("concurrency", "chunk_size", "max_carry", "per_page"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name.replace('_', ' ')} must be a positive integer")
        if self.per_page > 100:
            raise UsageError("per page is at most 100")
        if self.retries < 0:
            raise UsageError("retries must not be negative")
        for name in ("regex_timeout", "request_timeout", "deadline"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UsageError(f"{name.replace('_', ' ')} must be a positive number of seconds")
        if not self.api_url.startswith(("http://", "https://")):
            raise UsageError(f"the API URL must start with http:// or https://: {self.api_url!r}")
