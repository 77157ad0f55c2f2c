"""The fake GitHub behaves as docs/github.md says the real one does."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import aiohttp
import pytest

from tests.conftest import MakeFake, require_git
from tests.fake_github import (
    MAX_RAW_BYTES,
    FakeFile,
    FakeGist,
    FakeGitHub,
    blob_sha,
    make_gists,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

LIST_ITEM_KEYS = {
    "url", "forks_url", "commits_url", "id", "node_id", "git_pull_url", "git_push_url",
    "html_url", "files", "public", "created_at", "updated_at", "description", "comments",
    "user", "comments_url", "owner", "truncated",
}  # fmt: skip
LIST_FILE_KEYS = {"filename", "type", "language", "raw_url", "size"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def rels_in_order(link: str) -> list[tuple[str, str]]:
    return re.findall(r'<([^>]+)>; rel="(\w+)"', link)


async def test_pagination_links_point_at_user_id_and_cover_every_gist_once(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """Three pages; Link URLs are absolute at /user/{id}/gists, in GitHub's rel order."""
    fake = await make_fake(user_id_base=500)
    gists = make_gists("alice", 65)
    fake.add_user("alice", gists)
    url: str | None = f"{fake.api_url}/users/alice/gists"
    seen: list[str] = []
    rels: list[list[str]] = []
    while url is not None:
        async with session.get(url) as resp:
            assert resp.status == 200
            seen += [item["id"] for item in await resp.json()]
            links = rels_in_order(resp.headers["Link"])
            rels.append([rel for _, rel in links])
            for target, _ in links:
                assert target.startswith(f"{fake.base_url}/user/500/gists?per_page=30&page=")
            url = dict((rel, target) for target, rel in links).get("next")
    assert seen == [g.id for g in gists]
    assert rels == [["next", "last"], ["prev", "next", "last", "first"], ["prev", "first"]]
    assert [page for _, page in fake.list_served] == [1, 2, 3]
    assert fake.requests["list"] == 3


async def test_single_page_has_no_link_and_empty_user_is_empty_array(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """Everything on one page: no Link header; a user with no gists gets 200 []."""
    fake = await make_fake()
    fake.add_user("alice", make_gists("alice", 3))
    fake.add_user("empty", [])
    async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
        assert len(await resp.json()) == 3
        assert "Link" not in resp.headers
    async with session.get(f"{fake.api_url}/users/empty/gists") as resp:
        assert resp.status == 200
        assert await resp.json() == []
        assert "Link" not in resp.headers


async def test_per_page_is_clamped_to_100(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """per_page above 100 is served as 100, and the Link URLs say so."""
    fake = await make_fake()
    fake.add_user("alice", make_gists("alice", 150))
    async with session.get(f"{fake.api_url}/users/alice/gists?per_page=500") as resp:
        assert len(await resp.json()) == 100
        assert str(resp.links["next"]["url"]).endswith("?per_page=100&page=2")


async def test_unknown_user_is_github_404(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """An unknown login gets GitHub's JSON basic-error with rate-limit headers."""
    fake = await make_fake()
    async with session.get(f"{fake.api_url}/users/nobody/gists") as resp:
        assert resp.status == 404
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        assert "x-ratelimit-remaining" in resp.headers
        assert await resp.json() == {
            "message": "Not Found",
            "documentation_url": "https://docs.github.com/rest/gists/gists#list-gists-for-a-user",
            "status": "404",
        }


async def test_list_items_are_base_gists_with_opaque_raw_urls(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """List items have base-gist keys, no content, and raw URLs carrying sha and encoded name."""
    fake = await make_fake()
    secret = FakeGist("ffff0000ffff0000ffff", [FakeFile("s.txt", b"x")], public=False)
    shown = FakeGist("abc123abc123abc123ab", [FakeFile("a b.py", b"hi\n")])
    fake.add_user("alice", [shown, secret])
    async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
        [item] = await resp.json()
        assert resp.headers["Cache-Control"] == "private, max-age=60, s-maxage=60"
    assert set(item) == LIST_ITEM_KEYS
    assert item["owner"]["login"] == "alice"
    assert item["truncated"] is False
    entry = item["files"]["a b.py"]
    assert set(entry) == LIST_FILE_KEYS
    assert entry["size"] == 3
    sha = blob_sha(b"hi\n")
    assert re.fullmatch("[0-9a-f]{40}", sha)
    assert entry["raw_url"] == f"{fake.base_url}/raw/alice/abc123abc123abc123ab/raw/{sha}/a%20b.py"


async def test_etag_304_does_not_spend_the_rate_limit(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """If-None-Match with the ETag (strong or W/) gets an empty 304 and keeps remaining."""
    fake = await make_fake(rate_limit=10)
    fake.add_user("alice", make_gists("alice", 2))
    url = f"{fake.api_url}/users/alice/gists"
    async with session.get(url) as resp:
        etag = resp.headers["ETag"]
        assert resp.headers["x-ratelimit-remaining"] == "9"
    for tag in (etag, f"W/{etag}", f'"other", {etag}'):
        async with session.get(url, headers={"If-None-Match": tag}) as resp:
            assert resp.status == 304
            assert await resp.read() == b""
            assert resp.headers["ETag"] == etag
            assert resp.headers["x-ratelimit-remaining"] == "9"
    async with session.get(url, headers={"If-None-Match": '"stale"'}) as resp:
        assert resp.status == 200
        assert resp.headers["x-ratelimit-remaining"] == "8"
    assert fake.requests == {"list": 2, "list_304": 3}
    assert fake.seen_headers[1]["if-none-match"] == etag
    assert fake.seen_headers[1]["If-None-Match"] == etag


async def test_exhausted_rate_limit_gives_primary_403(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """After rate_limit requests the API answers 403 with remaining 0 and a reset time."""
    fake = await make_fake(rate_limit=2)
    fake.add_user("alice", make_gists("alice", 1))
    statuses = []
    for _ in range(3):
        async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
            statuses.append(resp.status)
            headers, body = resp.headers, await resp.json()
    assert statuses == [200, 200, 403]
    assert headers["x-ratelimit-remaining"] == "0"
    assert headers["x-ratelimit-used"] == "2"
    assert int(headers["x-ratelimit-reset"]) > time.time()
    assert body["message"].startswith("API rate limit exceeded")


async def test_missing_user_agent_is_refused_in_html(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """A request without User-Agent gets GitHub's 403 text/html refusal."""
    fake = await make_fake()
    fake.add_user("alice", [])
    url = f"{fake.api_url}/users/alice/gists"
    async with session.get(url, skip_auto_headers=["User-Agent"]) as resp:
        assert resp.status == 403
        assert resp.headers["Content-Type"] == "text/html"
        assert "User-Agent header" in await resp.text()


@pytest.mark.parametrize(
    ("fault", "status", "headers"),
    [
        ("rate_limited", 403, {"x-ratelimit-remaining": "0"}),
        ("rate_limited_429", 429, {"retry-after": "30"}),
        ("500", 500, {}),
        ("502", 502, {}),
        ("503", 503, {}),
    ],
)
async def test_list_status_faults(
    make_fake: MakeFake,
    session: aiohttp.ClientSession,
    fault: str,
    status: int,
    headers: dict[str, str],
) -> None:
    """Each status fault answers with its status, headers and a JSON message."""
    fake = await make_fake()
    fake.add_user("alice", make_gists("alice", 1))
    fake.set_list_fault("alice", fault)
    async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
        assert resp.status == status
        assert headers.items() <= resp.headers.items()
        assert "message" in await resp.json()
    if fault == "rate_limited":
        assert 50 < int(resp.headers["x-ratelimit-reset"]) - time.time() <= 60


async def test_list_body_faults(make_fake: MakeFake, session: aiohttp.ClientSession) -> None:
    """truncated_json is a 200 that does not parse; not_array is a 200 JSON object."""
    fake = await make_fake()
    fake.add_user("alice", make_gists("alice", 3))
    url = f"{fake.api_url}/users/alice/gists"
    fake.set_list_fault("alice", "truncated_json")
    async with session.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
        assert text.startswith("[{")
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    fake.set_list_fault("alice", "not_array")
    async with session.get(url) as resp:
        assert await resp.json() == {"message": "surprise"}
    fake.set_list_fault("alice", None)
    async with session.get(url) as resp:
        assert len(await resp.json()) == 3


async def test_list_reset_fault_drops_the_connection(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """The reset fault closes the connection without a response."""
    fake = await make_fake()
    fake.add_user("alice", make_gists("alice", 1))
    fake.set_list_fault("alice", "reset")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
            await resp.read()
    assert fake.in_flight == 0


async def test_list_fault_times_then_success(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """times=N faults only the next N list requests."""
    fake = await make_fake()
    fake.add_user("alice", make_gists("alice", 1))
    fake.set_list_fault("alice", "503", times=2)
    statuses = []
    for _ in range(3):
        async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
            statuses.append(resp.status)
    assert statuses == [503, 503, 200]


async def test_page_fault_hits_only_that_page(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """A page fault spares page 1 and hits page 2 reached through the Link URL."""
    fake = await make_fake()
    fake.add_user("alice", make_gists("alice", 4))
    fake.set_page_fault("alice", 2, "500", times=1)
    async with session.get(f"{fake.api_url}/users/alice/gists?per_page=2") as resp:
        assert resp.status == 200
        next_url = resp.links["next"]["url"]
    async with session.get(next_url) as resp:
        assert resp.status == 500
    async with session.get(next_url) as resp:
        assert resp.status == 200
        assert len(await resp.json()) == 2


async def test_get_gist_truncates_content_and_files(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """GET /gists/{id} cuts content at 1 MiB and the files map (and list items) at 300."""
    fake = await make_fake()
    big = b"a" * (1024 * 1024 + 10)
    gists = make_gists("alice", 1, 301, content=lambda i, j: big if j == 0 else b"small")
    fake.add_user("alice", gists)
    async with session.get(f"{fake.api_url}/gists/{gists[0].id}") as resp:
        gist = await resp.json()
    assert gist["truncated"] is True
    assert len(gist["files"]) == 300
    first = gist["files"]["gist0_file0.txt"]
    assert (first["truncated"], first["size"], len(first["content"])) == (True, len(big), 1 << 20)
    assert gist["files"]["gist0_file1.txt"]["content"] == "small"
    async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
        [item] = await resp.json()
    assert item["truncated"] is True
    assert len(item["files"]) == 300
    async with session.get(f"{fake.api_url}/gists/nope") as resp:
        assert resp.status == 404
    assert fake.requests["gist"] == 2


async def test_raw_body_arrives_in_pieces_without_rate_headers(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """The raw host streams the exact bytes in short pieces, as text/plain, unmetered."""
    fake = await make_fake(piece_size=100, rate_limit=10)
    content = bytes(range(256)) * 40
    fake.add_user("alice", [FakeGist("1" * 20, [FakeFile("bin.dat", content)])])
    async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
        raw_url = (await resp.json())[0]["files"]["bin.dat"]["raw_url"]
    assert blob_sha(content) in raw_url
    chunks = []
    async with session.get(raw_url) as resp:
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert resp.headers["Content-Length"] == str(len(content))
        assert not [h for h in resp.headers if h.lower().startswith("x-ratelimit")]
        async for chunk in resp.content.iter_any():
            chunks.append(chunk)
    assert b"".join(chunks) == content
    assert len(chunks) > 1
    assert fake.remaining == 9
    assert fake.requests == {"list": 1, "raw": 1}
    assert [path for _, path in fake.raw_started] == [raw_url.removeprefix(fake.base_url)]


async def test_raw_refuses_files_over_10_mib(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """Files over 10 MiB get 403 from the raw host, counted as raw_403."""
    fake = await make_fake()
    fake.add_user("alice", make_gists("alice", 1, content=lambda i, j: b"x" * (MAX_RAW_BYTES + 1)))
    async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
        raw_url = (await resp.json())[0]["files"]["gist0_file0.txt"]["raw_url"]
    async with session.get(raw_url) as resp:
        assert resp.status == 403
    assert fake.requests["raw_403"] == 1
    async with session.get(raw_url.replace("/raw/alice/", "/raw/bob/")) as resp:
        assert resp.status == 404


async def git(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "git", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def test_huge_gists_list_a_git_pull_url_that_git_can_clone(
    make_fake: MakeFake, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A gist with a file over raw_limit, or over 300 files, clones from file:// with all files."""
    require_git()
    fake = await make_fake(raw_limit=1000)
    odd = {
        "big.bin": bytes(range(256)) * 8,
        "with space.txt": b"a b\n",
        'quo"te\\.md': b"q\n",
        "ünïcode.py": "ü\n".encode(),
    }
    gists = [
        FakeGist("1" * 20, [FakeFile(name, content) for name, content in odd.items()]),
        make_gists("alice", 1, 301)[0],
        FakeGist("2" * 20, [FakeFile("small.txt", b"small")]),
    ]
    fake.add_user("alice", gists)
    assert fake.repos_built == 2
    async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
        items = {item["id"]: item for item in await resp.json()}
    assert items["2" * 20]["git_pull_url"] == f"https://gist.github.com/{'2' * 20}.git"
    repos = []
    for gist in gists[:2]:
        url = items[gist.id]["git_pull_url"]
        assert url.startswith("file:///")
        repos.append(Path(url2pathname(urlsplit(url).path)))
        await git("clone", "--depth", "1", "--quiet", url, str(tmp_path / gist.id))
        cloned = {p.name: p.read_bytes() for p in (tmp_path / gist.id).iterdir() if p.is_file()}
        assert cloned == {f.name: f.content for f in gist.files}
    assert all(repo.exists() for repo in repos)
    await fake.close()
    assert not any(repo.parent.exists() for repo in repos)


async def test_a_given_git_pull_url_is_listed_as_is(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """FakeGist.git_pull_url overrides the fake's own, even for a huge gist (nothing is built)."""
    fake = await make_fake(raw_limit=10)
    url = "http://127.0.0.1:9/never.git"
    fake.add_user("alice", [FakeGist("3" * 20, [FakeFile("f.txt", b"x" * 20)], git_pull_url=url)])
    async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
        [item] = await resp.json()
    assert (item["git_pull_url"], fake.repos_built) == (url, 0)


async def raw_url_of(fake: FakeGitHub, session: aiohttp.ClientSession, login: str) -> str:
    async with session.get(f"{fake.api_url}/users/{login}/gists") as resp:
        item = (await resp.json())[0]
    return str(next(iter(item["files"].values()))["raw_url"])


async def test_raw_reset_fault_is_a_client_error_after_part_of_the_body(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """The reset fault sends about half the body, then the client gets a payload error."""
    fake = await make_fake()
    fake.add_user("alice", [FakeGist("2" * 20, [FakeFile("f.txt", b"y" * 50_000, "reset")])])
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(await raw_url_of(fake, session, "alice")) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                received += chunk
    assert 0 < len(received) < 50_000
    assert fake.raw_in_flight == 0


async def test_raw_fault_times_then_success(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """fault_times limits a file fault to its first requests; then the file is served."""
    fake = await make_fake()
    files = [FakeFile("f.txt", b"ok", "500", fault_times=1)]
    fake.add_user("alice", [FakeGist("3" * 20, files)])
    fake.add_user("bob", [FakeGist("4" * 20, [FakeFile("g.txt", b"ok", "404", fault_times=2)])])
    for login, expected in (("alice", [500, 200, 200]), ("bob", [404, 404, 200])):
        raw_url = await raw_url_of(fake, session, login)
        statuses = []
        for _ in expected:
            async with session.get(raw_url) as resp:
                statuses.append(resp.status)
                if resp.status == 200:
                    assert await resp.read() == b"ok"
        assert statuses == expected


async def test_slow_fault_sleeps_between_pieces(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """The slow fault waits 0.2 s after each piece."""
    fake = await make_fake(piece_size=10)
    fake.add_user("alice", [FakeGist("5" * 20, [FakeFile("f.txt", b"z" * 30, "slow")])])
    raw_url = await raw_url_of(fake, session, "alice")
    started = time.monotonic()
    async with session.get(raw_url) as resp:
        assert await resp.read() == b"z" * 30
    assert time.monotonic() - started >= 0.4


async def test_latency_overlaps_and_peak_raw_in_flight_counts_it(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """Concurrent raw requests wait their latency together; the peak gauge sees all of them."""
    fake = await make_fake(latency=0.0, raw_latency=0.3)
    fake.add_user("alice", make_gists("alice", 5))
    async with session.get(f"{fake.api_url}/users/alice/gists") as resp:
        items = await resp.json()
    urls = [item["files"][f"gist{i}_file0.txt"]["raw_url"] for i, item in enumerate(items)]

    async def fetch(url: str) -> bytes:
        async with session.get(url) as resp:
            return await resp.read()

    started = time.monotonic()
    bodies = await asyncio.gather(*(fetch(url) for url in urls))
    assert time.monotonic() - started < 1.0  # 5 x 0.3 s would be 1.5 s if serialized
    assert all(b"gist" in body for body in bodies)
    assert fake.peak_raw_in_flight == 5
    assert fake.raw_in_flight == 0
    assert len(fake.raw_seen_headers) == 5
    fake.reset_counters()
    assert (fake.peak_raw_in_flight, fake.requests, fake.raw_started) == (0, {}, [])


async def test_raw_in_flight_drops_to_zero_when_client_hangs_up(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """A client closing mid-body ends the handler, and the gauges go back to 0."""
    fake = await make_fake(piece_size=1000)
    fake.add_user("alice", [FakeGist("6" * 20, [FakeFile("f.txt", b"w" * 10_000_000)])])
    raw_url = await raw_url_of(fake, session, "alice")
    resp = await session.get(raw_url)
    await resp.content.read(5000)
    assert fake.raw_in_flight == 1
    resp.close()
    deadline = time.monotonic() + 2
    # Polling: the fake's gauges are plain counters with nothing to wait on.
    while fake.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert (fake.raw_in_flight, fake.in_flight) == (0, 0)


async def test_cli_prints_its_url_and_serves() -> None:
    """`python -m tests.fake_github` prints its base URL on one line and serves the users."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fake_github", "--port", "0", "--users", "alice:3x2,bob:1",
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=10)
        url = line.decode().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/users/alice/gists") as resp:
                gists = await resp.json()
            assert [len(g["files"]) for g in gists] == [2, 2, 2]
            async with session.get(gists[0]["files"]["gist0_file1.txt"]["raw_url"]) as resp:
                assert (await resp.read()).startswith(b"gist 0 file 1 of alice\n")
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
