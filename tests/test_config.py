"""Settings: built once from flags and environment variables, validated, frozen."""

from __future__ import annotations

import datetime
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gistscan.config import (
    MAX_CHUNK_SIZE,
    SETTINGS_ENV,
    Query,
    Settings,
    check_api_url,
    normalize_since,
)
from gistscan.errors import UsageError


def test_an_empty_variable_is_unset() -> None:
    """`GISTSCAN_API_URL=` (a template's value left out) keeps the default, for every
    variable: an empty value never fails, and never turns a limit off."""
    empty = {variable: "" for variable in SETTINGS_ENV} | {"GISTSCAN_REGEX_TIMEOUT": "  "}
    assert Settings.from_env(empty) == Settings()
    assert Settings.from_env({"GISTSCAN_REGEX_TIMEOUT": "none"}).regex_timeout is None
    from gistscan.server import ENV, ServerConfig

    assert ServerConfig.from_env({variable: "" for variable in ENV}) == ServerConfig()


def test_from_env_reads_every_variable_and_flags_win() -> None:
    """Each GISTSCAN_* variable reaches its setting; an override (a flag) beats it."""
    env = {
        "GITHUB_TOKEN": "t0ken",
        "GISTSCAN_API_URL": "http://127.0.0.1:9",
        "GISTSCAN_CONCURRENCY": "3",
        "GISTSCAN_REGEX_TIMEOUT": "none",
        "GISTSCAN_CHUNK_SIZE": "4096",
        "UNRELATED": "x",
    }
    settings = Settings.from_env(env, concurrency=5)
    assert settings.token == "t0ken" and settings.api_url == "http://127.0.0.1:9"
    assert settings.regex_timeout is None and settings.chunk_size == 4096
    assert settings.concurrency == 5
    assert Settings.from_env({}) == Settings()
    assert "GITHUB_TOKEN" in SETTINGS_ENV


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"GISTSCAN_CONCURRENCY": "lots"}, "GISTSCAN_CONCURRENCY='lots': expected an integer"),
        ({"GISTSCAN_CONCURRENCY": "0"}, "GISTSCAN_CONCURRENCY: concurrency must be an integer"),
        ({"GISTSCAN_API_URL": "ftp://x"}, "GISTSCAN_API_URL: invalid API URL 'ftp://x': it must"),
        ({"GISTSCAN_API_URL": "http://[::1"}, "GISTSCAN_API_URL: invalid API URL 'http://[::1'"),
        ({"GISTSCAN_CHUNK_SIZE": "99999999999999"}, "chunk_size must be an integer from 1 to"),
        ({"GISTSCAN_MAX_CARRY": "99999999999999"}, "max_carry must be an integer from 1 to"),
        ({"GISTSCAN_RETRIES": "11"}, "GISTSCAN_RETRIES: retries must be from 0 to 10"),
        ({"GISTSCAN_BACKOFF": "nan"}, "GISTSCAN_BACKOFF: backoff must be"),
        ({"GISTSCAN_REGEX_TIMEOUT": "-2"}, "GISTSCAN_REGEX_TIMEOUT: regex_timeout must be"),
    ],
)
def test_from_env_names_the_bad_variable(env: dict[str, str], words: str) -> None:
    """A bad value is refused with the variable's name, before anything runs."""
    with pytest.raises(UsageError) as caught:
        Settings.from_env(env)
    assert words in caught.value.message


def test_token_never_in_repr() -> None:
    """The token is a credential: repr (logs, tracebacks) never shows it."""
    settings = Settings(token="ghp_secret123")
    assert "ghp_secret123" not in repr(settings)
    assert "ghp_secret123" not in str(settings)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://127.0.0.1:0", "port must be from 1 to 65535"),
        ("https://", "names no host"),
        ("https://api.github.com/?x=1", "not have a query or a fragment"),
        ("https://api .github.com", "white space"),
        ("api.github.com", "must start with http:// or https://"),
    ],
)
def test_bad_api_urls_are_refused_with_the_reason(url: str, words: str) -> None:
    """A URL that could never be asked is refused up front, naming what is wrong with it."""
    with pytest.raises(UsageError, match="invalid API URL") as caught:
        Settings(api_url=url)
    assert words in caught.value.message and caught.value.field == "api_url"


def test_good_api_urls_pass() -> None:
    """GitHub, an Enterprise server's /api/v3, a fake on an IPv6 loopback all pass."""
    for url in ("https://api.github.com", "https://ghe.example/api/v3", "http://[::1]:8080"):
        assert check_api_url(url) == url


def test_chunk_size_has_an_upper_bound() -> None:
    """A chunk is held whole per download: past MAX_CHUNK_SIZE it is refused."""
    assert Settings(chunk_size=MAX_CHUNK_SIZE).chunk_size == MAX_CHUNK_SIZE
    with pytest.raises(UsageError, match="chunk_size must be an integer from 1 to 16777216"):
        Settings(chunk_size=MAX_CHUNK_SIZE + 1)


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("2024-01-31", "2024-01-31T00:00:00Z"),
        ("2024-01-31T12:30:00Z", "2024-01-31T12:30:00Z"),
        ("2024-01-31T12:30:00+02:00", "2024-01-31T10:30:00Z"),
        ("2024-01-31 12:30", "2024-01-31T12:30:00Z"),
        (" 2024-01-31T00:00:00.5-01:00 ", "2024-01-31T01:00:00Z"),
        # Years below 1000 keep four digits (strftime's %Y wrote "1-01-01..." on glibc).
        ("0001-01-01", "0001-01-01T00:00:00Z"),
        ("0999-06-01", "0999-06-01T00:00:00Z"),
        ("0001-01-01T00:30:00-00:30", "0001-01-01T01:00:00Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T23:59:59+01:00", "9999-12-31T22:59:59Z"),
        ("2024-01-31T12:00:00.999Z", "2024-01-31T12:00:00Z"),
        ("20240131", "2024-01-31T00:00:00Z"),
    ],
)
def test_since_is_normalized_for_github(given: str, sent: str) -> None:
    """ISO 8601 dates and date-times become GitHub's YYYY-MM-DDTHH:MM:SSZ, in UTC."""
    assert normalize_since(given) == sent


@pytest.mark.parametrize(
    "bad",
    ["yesterday", "2024-13-01", "", "2024-01-01T25:00", "1-01-01", "10000-01-01", "0000-01-01"],
)
def test_bad_since_is_refused(bad: str) -> None:
    """Anything else is one clear UsageError."""
    with pytest.raises(UsageError, match="ISO 8601") as refused:
        normalize_since(bad)
    assert refused.value.field == "since"


@pytest.mark.parametrize("bad", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00"])
def test_since_outside_the_years_once_in_utc_is_refused(bad: str) -> None:
    """A valid date-time whose offset moves it before year 1 or past 9999 in UTC: said so."""
    with pytest.raises(UsageError, match="outside the years 0001 to 9999 once converted to UTC"):
        normalize_since(bad)


@given(
    when=st.datetimes(
        min_value=datetime.datetime(1, 1, 2),
        max_value=datetime.datetime(9999, 12, 30),
        timezones=st.none() | st.timezones(),
    ),
    sep=st.sampled_from(["T", " "]),
)
def test_since_is_the_instant_in_utc_to_the_second(when: datetime.datetime, sep: str) -> None:
    """Any ISO 8601 date-time in the years 1-9999: its instant in UTC, seconds floored,
    written with a four-digit year; normalizing again changes nothing, so a query built
    from it always passes `Query.check` (the server's check before its 200)."""
    sent = normalize_since(when.isoformat(sep=sep))
    utc = when.astimezone(datetime.UTC) if when.tzinfo else when
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", sent)
    assert datetime.datetime.strptime(sent, "%Y-%m-%dT%H:%M:%SZ") == utc.replace(
        tzinfo=None, microsecond=0
    )
    assert normalize_since(sent) == sent
    Query("octo", "x", since=sent).check()


def test_query_checks_its_new_fields() -> None:
    """Context within bounds, positive per-file counts, a normalized since, valid filters."""
    Query("octo", "x", before_context=1000, max_count=1, since="2024-01-01T00:00:00Z").validate()
    for bad in (
        {"before_context": 1001},
        {"after_context": -1},
        {"max_count": 0},
        {"since": "2024-01-01"},
        {"globs": ("",)},
        {"languages": ("x" * 201,)},
    ):
        with pytest.raises(UsageError):
            Query("octo", "x", **bad).validate()  # type: ignore[arg-type]


def test_word_regexp_keeps_whole_words_only() -> None:
    """-w: no word character right before or after; a pattern may start with a non-word one."""
    compiled = Query("o", "foo", word_regexp=True).validate()
    assert [m.start() for m in compiled.finditer("foobar foo_x foo-y (foo) xfoo foo")] == [
        13, 20, 30
    ]  # fmt: skip
    dashed = Query("o", "-x", word_regexp=True).validate()
    assert [m.start() for m in dashed.finditer("a -x b -xy c--x")] == [2, 13]


def test_every_variable_is_documented() -> None:
    """Each variable the server reads has a row in docs/settings.md and in the README."""
    from pathlib import Path

    from gistscan import server

    root = Path(__file__).resolve().parent.parent
    docs = (root / "docs" / "settings.md").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    for variable in server.ENV:
        assert f"| `{variable}` |" in docs, f"{variable} is missing from docs/settings.md"
        assert f"`{variable}`" in readme, f"{variable} is missing from the README"
