"""Filters on both search routes: glob, language and since, validated and never downloaded."""

from __future__ import annotations

from typing import Any

import pytest

from gistscan.config import Settings
from gistscan.server import ServerConfig, make_app
from tests.fake_github import FakeFile, FakeGist, FakeGitHub
from tests.test_server import SEARCH, Client, Serve, documented


@pytest.fixture
def serve(aiohttp_client: Any) -> Serve:
    """The real app against a fake GitHub (as tests/test_server.py's fixture)."""

    async def start(fake: FakeGitHub) -> Client:
        scan = Settings(api_url=fake.api_url, retries=1, backoff=0.01)
        client: Client = await aiohttp_client(make_app(ServerConfig(settings=scan)))
        return client

    return start


GISTS = [
    FakeGist("a" * 20, updated_at="2025-02-01T00:00:00Z", files=[
        FakeFile("app.py", b"needle py\n"),
        FakeFile("test_app.py", b"needle test\n"),
        FakeFile("notes.md", b"needle md\n"),
    ]),
    FakeGist("b" * 20, updated_at="2020-02-01T00:00:00Z", files=[
        FakeFile("old.py", b"needle old\n"),
        FakeFile("Makefile", b"needle make\n"),
    ]),
]  # fmt: skip


def found(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["filename"] for r in records if r["type"] == "match")


def requested(fake: FakeGitHub) -> list[str]:
    return sorted(path.rpartition("/")[2] for _, path in fake.raw_started)


@pytest.mark.parametrize(
    ("params", "files", "filtered"),
    [
        ([("glob", "*.py")], ["app.py", "old.py", "test_app.py"], 2),
        ([("glob", "*.py"), ("glob", "!test_*")], ["app.py", "old.py"], 3),
        (
            [("language", "python"), ("language", "MARKDOWN")],
            ["app.py", "notes.md", "old.py", "test_app.py"],
            1,
        ),
        ([("since", "2025-01-01")], ["app.py", "notes.md", "test_app.py"], 0),
        ([("since", "2025-01-01T00:00:00+01:00"), ("glob", "!*.md")], ["app.py", "test_app.py"], 1),
    ],
)
async def test_get_filters_before_any_download(
    fake: FakeGitHub,
    serve: Serve,
    params: list[tuple[str, str]],
    files: list[str],
    filtered: int,
) -> None:
    """GET ...?glob=&language=&since=: only the files kept are requested; the summary counts
    the rest as filtered."""
    fake.add_user("bob", GISTS)
    client = await serve(fake)
    resp = await client.get(SEARCH.format("bob"), params=[("pattern", "needle"), *params])
    assert resp.status == 200
    records = await documented(client, resp)
    assert found(records) == files == requested(fake)
    assert records[-1]["filtered"] == filtered


@pytest.mark.parametrize("since", ["0001-01-01", "0999-06-01T00:00:00Z", "9999-12-31T23:59:59Z"])
async def test_since_at_the_ends_of_the_calendar_on_both_routes(
    fake: FakeGitHub, serve: Serve, since: str
) -> None:
    """Years 1 to 9999 are accepted on both routes and reach GitHub with four digits: a
    complete answer, never a 500 or a stream cut after its 200."""
    fake.add_user("bob", GISTS)
    client = await serve(fake)
    everything = since < "2020"
    resp = await client.get(SEARCH.format("bob"), params=[("pattern", "needle"), ("since", since)])
    assert resp.status == 200
    records = await documented(client, resp)
    assert records[-1]["complete"] is True and records[-1]["errors"] == 0
    assert (len(found(records)) == 5) is everything
    resp = await client.post(
        "/api/v1/search", json={"username": "bob", "pattern": "needle", "since": since}
    )
    assert resp.status == 200
    answer = await documented(client, resp)
    assert answer["summary"]["complete"] is True
    assert (len(answer["details"]) == 5) is everything


async def test_post_filters_before_any_download(fake: FakeGitHub, serve: Serve) -> None:
    """POST body fields glob and language (arrays) and since (a string) work the same way."""
    fake.add_user("bob", GISTS)
    client = await serve(fake)
    body = {
        "username": "bob",
        "pattern": "needle",
        "glob": ["*.py", "!test_*"],
        "language": ["Python"],
        "since": "2025-01-01",
    }
    resp = await client.post("/api/v1/search", json=body)
    assert resp.status == 200
    answer = await documented(client, resp)
    assert sorted(d["filename"] for d in answer["details"]) == ["app.py"] == requested(fake)
    assert answer["summary"]["filtered"] == 2


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ([("since", "last week")], "ISO 8601"),
        ([("glob", "!")], "an empty glob"),
        ([("glob", "{a,b}" * 11)], "expands to over"),
        ([("language", "x" * 101)], "at most 100 characters"),
        ([("glob", "*.py")] * 33, "at most 32 globs"),
        ([("since", "2024-01-01"), ("since", "2024-01-02")], "more than once"),
        ([("since", "0001-01-01T00:00:00+01:00")], "outside the years 0001 to 9999"),
        ([("glob", "[")], "unclosed character class"),
        ([("glob", "{a")], "unclosed alternate group"),
        ([("glob", "a}")], "unopened alternate group"),
        ([("glob", "[c-a].py")], "invalid range"),
        ([("glob", "*.py\\")], "dangling"),
    ],
)
async def test_get_bad_filters_are_400_before_any_request(
    fake: FakeGitHub, serve: Serve, params: list[tuple[str, str]], words: str
) -> None:
    """Bad filter parameters: 400 naming the problem, GitHub never asked."""
    fake.add_user("bob", GISTS)
    client = await serve(fake)
    resp = await client.get(SEARCH.format("bob"), params=[("pattern", "needle"), *params])
    assert resp.status == 400
    problem = await documented(client, resp)
    assert words in problem["message"]
    assert sum(fake.requests.values()) == 0


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"glob": "*.py"}, "must be an array"),
        ({"glob": ["*.py", 3]}, "array of strings"),
        ({"language": [None]}, "array of strings"),
        ({"since": 20240101}, "must be a string"),
        ({"since": "soon"}, "ISO 8601"),
        ({"since": "9999-12-31T23:00:00-02:00"}, "outside the years 0001 to 9999"),
        ({"glob": ["{a,{b}}"]}, "nested alternate groups"),
    ],
)
async def test_post_bad_filters_are_400_before_any_request(
    fake: FakeGitHub, serve: Serve, fields: dict[str, Any], words: str
) -> None:
    """Bad filter fields in the body: 400 naming the problem, GitHub never asked."""
    fake.add_user("bob", GISTS)
    client = await serve(fake)
    resp = await client.post(
        "/api/v1/search", json={"username": "bob", "pattern": "needle", **fields}
    )
    assert resp.status == 400
    problem = await documented(client, resp)
    assert words in problem["message"]
    assert sum(fake.requests.values()) == 0
