"""Every hostile upstream gives a clear error or the right answer, bounded in time and memory."""

from __future__ import annotations

import asyncio
import os
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import pytest

from gistscan.budget import Budget
from gistscan.config import Query, Settings
from gistscan.errors import ListingError
from gistscan.github import client_session
from gistscan.pipeline import make_github, search
from gistscan.records import Error, Match, Record, Summary
from tests.hostile_github import ENCODED, GIT_URLS, LINKS, SECONDARY_BODIES, HostileGitHub
from tests.test_cli import gistscan

# Quick limits, so that the stalling upstreams end fast: a read stalls 0.5 s at most, a
# request lasts 2 s, one wait 1 s.
QUICK = {
    "retries": 1,
    "backoff": 0.01,
    "backoff_max": 1.0,
    "request_timeout": 0.5,
    "request_total_timeout": 2.0,
    "max_pages": 5,
}
HANG_GUARD = 60  # seconds: a search still running then hangs (no timing claim)


@dataclass
class Run:
    records: list[Record]

    @property
    def summary(self) -> Summary:
        last = self.records[-1]
        assert isinstance(last, Summary)
        return last

    @property
    def listing_errors(self) -> list[Error]:
        return [r for r in self.records if isinstance(r, Error) and r.gist_id is None]

    @property
    def file_errors(self) -> list[Error]:
        return [r for r in self.records if isinstance(r, Error) and r.gist_id is not None]

    @property
    def matches(self) -> list[Match]:
        return [r for r in self.records if isinstance(r, Match)]


async def run(hostile: HostileGitHub, user: str, **settings: Any) -> Run:
    query = Query(user, "needle")
    options = {"api_url": hostile.api_url, **QUICK, **settings}
    async with aclosing(search(query, Settings(**options))) as records:
        got = await asyncio.wait_for(_all(records), HANG_GUARD)
    return Run(got)


async def _all(records: Any) -> list[Record]:
    return [record async for record in records]


@dataclass(frozen=True)
class Expect:
    """What a search of one hostile user gives: the listing's error code (None: it ends
    well), each failing file's code, the number of matches."""

    listing: str | None = None
    files: list[str] = field(default_factory=list)
    matches: int = 0


EXPECTED = {
    "normal": Expect(matches=1),
    "secondary403": Expect("rate_limited"),
    "secondary429": Expect("rate_limited"),
    "abuse403": Expect("rate_limited"),
    "abusedoc403": Expect("rate_limited"),
    "shouting403": Expect("rate_limited"),
    "forbidden403": Expect("upstream_error"),
    "retry-inf": Expect("rate_limited"),
    "retry-nan": Expect("rate_limited"),
    "retry-neg": Expect("rate_limited"),
    "retry-huge": Expect("rate_limited"),
    "retry-frac": Expect("rate_limited"),
    "retry-word": Expect("rate_limited"),
    "retry-date": Expect("rate_limited"),
    "resetinf": Expect("rate_limited"),
    "flaky5xx": Expect(matches=1),
    "linkcomma": Expect(matches=2),
    "linktwo": Expect(matches=2),
    "linkrel": Expect(matches=2),
    **{user: Expect(matches=2) for user in LINKS},
    "linkcreds": Expect("invalid_response", matches=1),
    "rawcreds": Expect(files=["invalid_response"]),
    "redircreds": Expect("invalid_response"),  # with the token: see the test of its own
    "shifty": Expect(matches=3),
    "linkvary": Expect("too_large", matches=1),
    "linkloop": Expect("invalid_response", matches=2),
    "linkother": Expect("invalid_response", matches=1),
    "redirother": Expect("invalid_response"),
    "redirsame": Expect(matches=1),
    "biglist": Expect("invalid_response"),
    "biglistcl": Expect("invalid_response"),
    "bigerror": Expect("upstream_error"),
    "raw403big": Expect(files=["upstream_error"]),
    "deepjson": Expect("invalid_response"),
    "deepjson2": Expect("invalid_response"),
    **{
        kind: Expect(matches=1) if kind.endswith("ok") else Expect(files=["invalid_response"])
        for kind in ENCODED
    },
    "gzip1": Expect(matches=1),
    "shortraw": Expect(files=["upstream_error"]),
    "gziplist": Expect(matches=1),
    "gzipcutlist": Expect("invalid_response"),
    "trickle": Expect("upstream_error"),
    "trickleraw": Expect(files=["upstream_error"]),
    "hanglist": Expect("upstream_error"),
    "hangraw": Expect(files=["upstream_error"]),
    "endlessraw": Expect(files=["invalid_response"]),
    "cl10g": Expect(files=["invalid_response"]),
    "weirdtypes": Expect(matches=4),
    "filesnotdict": Expect("invalid_response"),
    "ansi": Expect(matches=1),
    "big403-ext": Expect(files=["invalid_response"]),
    "nobody": Expect("not_found"),
    **{f"git-{kind}": Expect(files=["invalid_response"], matches=1) for kind in GIT_URLS},
}


@pytest.mark.parametrize("user", sorted(EXPECTED))
async def test_every_hostile_upstream_gives_a_clear_error_or_the_right_answer(
    hostile: HostileGitHub, user: str
) -> None:
    """Each hostile behaviour: the right records (the listing's error, each file's error, the
    matches), one summary, `complete` only when nothing failed, and no endless body read whole."""
    hostile.n_files = 3
    result = await run(hostile, user, token="t0ken")
    expect = EXPECTED[user]
    assert [e.code for e in result.listing_errors] == ([expect.listing] if expect.listing else [])
    assert sorted(e.code for e in result.file_errors) == expect.files
    assert len(result.matches) == expect.matches
    assert [type(r) for r in result.records].count(Summary) == 1
    failed = bool(expect.listing or expect.files)
    assert result.summary.complete is not failed
    assert result.summary.errors == len(result.listing_errors) + len(result.file_errors)
    for error in result.listing_errors + result.file_errors:
        assert error.message and "Traceback" not in error.message and "\n" not in error.message
    # Bounded memory: no endless body was read whole (at most the page cap, a few KB of an
    # error body, or what a stalled request let through in its time).
    assert hostile.written < 64 * 1024 * 1024
    # The token only ever went to the API origin.
    assert not [s for s in hostile.log if s.auth and s.host != hostile.api_url[7:]]
    assert os.listdir(hostile.evil_dir) == []  # no git URL made anything happen


async def listing_error(hostile: HostileGitHub, user: str, budget: Budget | None = None) -> Any:
    """The ListingError of page one of `user`."""
    async with client_session() as session:
        github = make_github(session, Settings(api_url=hostile.api_url, **QUICK), None, budget)
        with pytest.raises(ListingError) as raised:
            await github.get_page(github.user_gists_url(user))
    return raised.value


async def test_rate_limit_waits_are_parsed_and_clamped(hostile: HostileGitHub) -> None:
    """Retry-After and x-ratelimit-reset, whatever they say, become a finite wait: huge ones
    clamp to an hour, words, nan and negative seconds mean GitHub's one minute, a date counts
    from now."""
    waits = {}
    secondary = [*sorted(set(SECONDARY_BODIES) - {"forbidden403"}), "secondary429"]
    for user in ["retry-inf", "retry-huge", "resetinf", "retry-nan", "retry-word", "retry-neg",
                 "retry-frac", "retry-date", *secondary]:  # fmt: skip
        error = await listing_error(hostile, user)
        assert error.code == "rate_limited"
        waits[user] = error.retry_after
    assert waits["retry-inf"] == waits["retry-huge"] == waits["resetinf"] == 3600
    assert waits["retry-nan"] == waits["retry-word"] == waits["retry-neg"] == 60
    assert [waits[user] for user in secondary] == [60] * len(secondary)
    assert waits["retry-frac"] == 1.5
    assert 100 < waits["retry-date"] <= 120


async def test_secondary_rate_limit_holds_the_api_for_every_later_request(
    hostile: HostileGitHub,
) -> None:
    """After a secondary limit, a client sharing the budget asks GitHub nothing for a minute."""
    budget = Budget()
    first = await listing_error(hostile, "secondary403", budget)
    later = await listing_error(hostile, "normal", budget)
    assert (first.code, later.code) == ("rate_limited", "rate_limited")
    assert later.retry_after is not None and 55 < later.retry_after <= 60
    assert [s.path for s in hostile.log] == ["/users/secondary403/gists?per_page=100"]


async def test_raw_429_stops_every_raw_request_for_its_window(hostile: HostileGitHub) -> None:
    """A raw 429 with Retry-After: 60 holds the raw host: no request is sent after it but those
    already in flight, and every file that cannot wait gets `rate_limited`."""
    hostile.n_files = 40
    result = await run(hostile, "rawlimit", concurrency=4)
    assert [e.code for e in result.file_errors] == ["rate_limited"] * 40
    assert result.summary.complete is False
    # The first 429 came back while at most `concurrency` requests were in flight.
    assert len(hostile.requests("/raw/")) <= 4
    assert all("resets in 60 s" in e.message for e in result.file_errors)


async def test_raw_429_with_a_short_wait_is_waited_for(hostile: HostileGitHub) -> None:
    """A raw 429 asking for a wait within the ceiling is honoured, then the file is retried."""
    hostile.n_files, hostile.raw_retry_after = 1, "0.3"
    result = await run(hostile, "rawlimit", retries=2)
    # It still answers 429: tried once more after the wait, then reported.
    assert [e.code for e in result.file_errors] == ["rate_limited"]
    assert len(hostile.requests("/raw/")) == 3


async def test_page_shift_duplicate_is_scanned_once(hostile: HostileGitHub) -> None:
    """A gist met on two pages (offset paging shifted) is listed, downloaded and reported once."""
    result = await run(hostile, "shifty")
    assert sorted(m.gist_id for m in result.matches) == ["g0", "g1", "g2"]
    assert result.summary.gists == 3
    assert sorted(s.path for s in hostile.requests("/raw/")) == [
        "/raw/needle/f0.txt",
        "/raw/needle/f1",
        "/raw/needle/f2.txt",
    ]


@pytest.mark.parametrize("user", ["linkcomma", "linktwo", "linkrel", *LINKS])
async def test_link_headers_are_followed_exactly(hostile: HostileGitHub, user: str) -> None:
    """A comma inside the next URL, a second Link header, a relative URL, relation and
    parameter names in any case, `rel` holding several relations, a quoted comma, escapes:
    page two is read, at exactly the URL given (`%2C` stays `%2C`)."""
    result = await run(hostile, user)
    assert result.summary.complete and result.summary.gists == 2
    second = {
        "linkcomma": f"/p/{user}/gists?page=2&sort=updated,desc",
        "linktwo": f"/p/{user}/gists?page=2",
        "linkrel": f"/p/{user}/gists?page=2",
        **{name: path.format(user=name) for name, (_, path) in LINKS.items()},
    }[user]
    assert [s.path for s in hostile.requests("/p/")] == [second]


async def test_a_listing_that_never_ends_stops_at_max_pages(hostile: HostileGitHub) -> None:
    """Each page linking to a new URL: max_pages pages are read, then a too_large error."""
    result = await run(hostile, "linkvary", max_pages=7)
    [error] = result.listing_errors
    assert error.code == "too_large" and "7 pages" in error.message
    assert len(hostile.requests("/users/")) + len(hostile.requests("/p/")) == 7


async def test_pages_come_only_from_the_api_origin(hostile: HostileGitHub) -> None:
    """A Link to another origin is never requested; a redirect there is refused, without the
    token."""
    result = await run(hostile, "linkother", token="t0ken")
    assert "leaves the API host" in result.listing_errors[0].message
    assert [s for s in hostile.log if s.host.startswith("localhost")] == []
    result = await run(hostile, "redirother", token="t0ken")
    assert "redirected away from the API host" in result.listing_errors[0].message
    [away] = [s for s in hostile.log if s.host.startswith("localhost")]
    assert away.auth is False


async def test_list_page_over_the_cap_is_refused_unread(hostile: HostileGitHub) -> None:
    """A list page past max_page_bytes is invalid_response; one that announces its size is
    refused before its body, and an error body is read a few KB only."""
    result = await run(hostile, "biglist", max_page_bytes=1 << 20)
    assert "over the limit of 1048576 bytes" in result.listing_errors[0].message
    assert hostile.written < 16 << 20  # the cap, and what the socket buffers held
    hostile.written = 0
    await run(hostile, "biglistcl")
    await run(hostile, "bigerror")
    assert hostile.written < 16 << 20


UNDECODABLE = {
    "gzip2": "'gzip,gzip', which cannot be decoded",
    "gzip2headers": "'gzip, gzip', which cannot be decoded",
    "xenc": "'x-foo', which cannot be decoded",
    "brenc": "'br', which cannot be decoded",
    "zstdenc": "'zstd', which cannot be decoded",
    "compressenc": "'compress', which cannot be decoded",
    "gzipcut": "gzip stream is cut short",
    "gzipcut8": "gzip stream is cut short",
    "deflatecut": "deflate stream is cut short",
    "rawdeflatecut": "deflate stream is cut short",
    "gzipcorrupt": "gzip stream is corrupt",
    "gzipheader": "gzip stream is corrupt",
    "gziptrailing": "gzip stream is corrupt",
    "deflatetrailing": "goes on past the end of its deflate stream",
    "gzipbomb": "goes on past 10485760 bytes",
}


def test_every_undecodable_kind_is_tested() -> None:
    assert sorted(UNDECODABLE) == sorted(
        k for k in ENCODED if not k.endswith("ok") and k != "gzip1"
    )


@pytest.mark.parametrize("user", sorted(UNDECODABLE))
async def test_a_raw_body_that_cannot_be_decoded_is_an_error(
    hostile: HostileGitHub, user: str
) -> None:
    """A Content-Encoding we did not ask for, a stream cut short, corrupt or followed by
    garbage, a bomb: an invalid_response record with one clean line, never a "binary" skip
    nor a silent truncation, and never retried (decoding fails the same way every time)."""
    result = await run(hostile, user, retries=3)
    [error] = result.file_errors
    assert error.code == "invalid_response" and UNDECODABLE[user] in error.message
    assert "\n" not in error.message and "Error" not in error.message  # no exception repr
    assert (result.summary.skipped, result.summary.complete) == (0, False)
    assert len(hostile.requests("/raw/")) == 1
    assert result.summary.bytes <= 10 * 1024 * 1024 + 64 * 1024  # a bomb is cut, not kept


@pytest.mark.parametrize("user", sorted(k for k in ENCODED if k.endswith("ok")))
async def test_every_gzip_and_deflate_form_is_decoded(hostile: HostileGitHub, user: str) -> None:
    """gzip (any case, x-gzip, several members) and deflate (zlib-wrapped or raw): the whole
    text is searched, its match on its last line, with exact chunk sizes."""
    result = await run(hostile, user, chunk_size=1000)
    [match] = result.matches
    assert match.line_number == 2001 and result.summary.complete
    assert result.summary.bytes == 2000 * 12 + 28


async def test_a_raw_body_cut_before_its_content_length_is_a_file_error(
    hostile: HostileGitHub,
) -> None:
    """A body that breaks off early may be a network fault: retried, then an error record
    for that file (never a file searched in part and `complete`)."""
    result = await run(hostile, "shortraw", retries=2)
    [error] = result.file_errors
    assert error.code == "upstream_error" and "broke off before its end" in error.message
    assert result.summary.complete is False
    assert len(hostile.requests("/raw/")) == 3


async def test_a_list_page_that_does_not_decode_is_invalid_and_not_retried(
    hostile: HostileGitHub,
) -> None:
    result = await run(hostile, "gzipcutlist", retries=3)
    [error] = result.listing_errors
    assert error.code == "invalid_response" and "gzip stream is cut short" in error.message
    assert len(hostile.log) == 1


async def test_a_trickle_is_cut_by_the_total_time_of_a_request(hostile: HostileGitHub) -> None:
    """One byte at a time, never a read timeout: the request's total limit ends it."""
    result = await run(hostile, "trickle", request_total_timeout=1.0, request_timeout=30)
    [error] = result.listing_errors
    assert error.code == "upstream_error" and "within 1 s" in error.message


async def test_a_search_deadline_ends_a_trickle(hostile: HostileGitHub) -> None:
    """With a deadline, a trickling file ends in deadline_exceeded, whatever the request limits."""
    result = await run(hostile, "trickleraw", request_total_timeout=None, deadline=1.0)
    assert [e.code for e in result.listing_errors] == ["deadline_exceeded"]


@pytest.mark.parametrize("kind", sorted(GIT_URLS))
async def test_git_urls_other_than_https_are_never_cloned(
    hostile: HostileGitHub, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ext::, fd::, local paths, file://, options, ssh, http: refused before git runs, by
    default, whatever the API root."""
    from gistscan import huge

    started: list[str] = []
    monkeypatch.setattr(huge, "_git", lambda *a, **k: started.append(str(a)))  # never called
    result = await run(hostile, f"git-{kind}")
    [error] = result.file_errors
    assert (error.gist_id, error.filename, error.code) == ("g1", None, "invalid_response")
    assert started == []
    assert os.listdir(hostile.evil_dir) == []


async def test_cli_hostile_upstreams_exit_2_with_one_line(hostile: HostileGitHub) -> None:
    """The command line: a rate limit with a huge Retry-After, a deep JSON listing and an
    undecodable file each print one error line and exit 2, never a traceback."""
    env = {"GISTSCAN_REQUEST_TIMEOUT": "0.5", "GISTSCAN_REQUEST_TOTAL_TIMEOUT": "2"}
    for user, code in (
        ("retry-inf", "rate_limited"),
        ("deepjson", "invalid_response"),
        ("gzip2", "invalid_response"),
        ("secondary403", "rate_limited"),
    ):
        result = await gistscan("search", user, "needle", "--api-url", hostile.api_url, env=env)
        assert result.code == 2, (user, result.err)
        assert f"{code}:" in result.err


async def test_cli_deadline_stops_a_trickle(hostile: HostileGitHub) -> None:
    """`--deadline` bounds a whole search, even against an upstream that never stalls a read."""
    result = await gistscan(
        "search", "trickle", "needle", "--api-url", hostile.api_url, "--json", "--deadline", "1"
    )
    assert result.code == 2
    assert [r["code"] for r in result.records if r["type"] == "error"] == ["deadline_exceeded"]
    assert result.summary["complete"] is False


LEGACY = ["mees-", "gil--", "-Jerry-", "0----0", "a" * 39]


async def test_legacy_logins_are_searched(hostile: HostileGitHub) -> None:
    """Logins older accounts really have (leading, trailing, doubled hyphens) are searched."""
    hostile.legacy.update(LEGACY)
    for login in LEGACY:
        result = await gistscan(
            "search", "--json", "--api-url", hostile.api_url, "--", login, "needle"
        )
        assert result.code == 0, result.err
        assert result.summary["matches"] == 1 and result.summary["username"] == login


@pytest.mark.parametrize("login", ["a" * 40, "", "octo.cat", "octo/cat", "octoc\u0430t", "a_b"])
async def test_logins_unsafe_in_a_path_are_refused_before_any_request(
    hostile: HostileGitHub, login: str
) -> None:
    result = await gistscan("search", "--api-url", hostile.api_url, "--", login, "needle")
    assert result.code == 2 and "invalid GitHub user name" in result.err
    assert hostile.log == []


@pytest.mark.parametrize("user", ["endlessraw", "cl10g"])
async def test_a_raw_body_past_its_listed_size_is_cut(hostile: HostileGitHub, user: str) -> None:
    """A raw URL names one revision of a known size: a body that goes on past it and past
    GitHub's raw limit (or announces as much) is refused, bounded by bytes, not by time."""
    result = await run(hostile, user, request_total_timeout=None)
    [error] = result.file_errors
    assert error.code == "invalid_response" and "goes on past 10485760 bytes" in error.message
    assert result.summary.bytes <= 10 * 1024 * 1024


async def test_urls_with_credentials_are_never_requested_nor_printed(
    hostile: HostileGitHub,
) -> None:
    """A Link or a raw_url holding user:password@ is refused before any request, a redirect
    to one (with the token) too; no message repeats the password."""
    for user in ("linkcreds", "rawcreds", "redircreds"):
        result = await run(hostile, user, token="t0ken")
        [error] = result.listing_errors + result.file_errors
        assert error.code == "invalid_response"
        assert "sekrit" not in str(result.records)
    assert hostile.requests("/p/") == []
    assert len(hostile.requests("/raw/")) == 1  # linkcreds' page one; never rawcreds' file
    assert [s.path for s in hostile.log if s.path.startswith("/users/normal")] == []


async def test_a_redirect_with_credentials_is_followed_without_printing_them(
    hostile: HostileGitHub,
) -> None:
    """Without a token, aiohttp follows such a redirect (the URL's credentials are the
    upstream's own); nothing printed holds them."""
    result = await run(hostile, "redircreds")
    assert len(result.matches) == 1 and result.summary.complete
    assert "sekrit" not in str(result.records)


@pytest.mark.parametrize("how", ["flag", "env", "serve"])
async def test_credentials_in_the_api_url_are_refused_unprinted(
    hostile: HostileGitHub, how: str
) -> None:
    """user:password@ in the API URL (--api-url, GISTSCAN_API_URL, the server's setting):
    refused at configuration time, one line, exit 2, the password never repeated, and no
    request sent."""
    url = hostile.api_url.replace("//", "//qauser:qapass@")
    if how == "flag":
        result = await gistscan("search", "normal", "needle", "--api-url", url)
    elif how == "env":
        result = await gistscan("search", "normal", "needle", env={"GISTSCAN_API_URL": url})
    else:
        result = await gistscan("serve", "--port", "0", env={"GISTSCAN_API_URL": url})
    assert result.code == 2 and result.err.count("\n") == 1
    assert "user name or password" in result.err
    assert "qapass" not in result.err + result.out and "qauser" not in result.err + result.out
    assert hostile.log == []
