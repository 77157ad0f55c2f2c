"""Huge gists: files over 10 MB and files past the 300 listed, read through a real git clone."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import regex
from prometheus_client import REGISTRY

from gistscan import huge, listing
from gistscan.config import Query, Settings
from gistscan.errors import FetchError
from gistscan.files import FileDone, FileEvent
from gistscan.github import RAW_LIMIT, GitHub
from gistscan.listing import Gist, GistFile
from gistscan.pipeline import search
from gistscan.records import Error, Match, Record, Summary
from tests.conftest import require_git
from tests.fake_github import FakeFile, FakeGist, FakeGitHub, big_text
from tests.test_cli import gistscan, interruptible

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")


@pytest.fixture(autouse=True)
def _git(request: pytest.FixtureRequest) -> None:
    """Every test here but the one about its absence needs git: say so where it is missing."""
    if "without_git" not in request.node.name:
        require_git()


TOKEN = r"TOKEN-\w+"
# The fake's repositories are file:// URLs and the silent server's http://: gistscan clones
# over https alone unless told otherwise.
PROTOCOLS = "https:http:file"
GIT_ENV = {"GISTSCAN_GIT_PROTOCOLS": PROTOCOLS}


def big_file(size: int) -> tuple[bytes, list[tuple[int, int, str]]]:
    """About `size` bytes of text, tokens on its first, a middle and its unterminated last line.

    Returns the bytes and the expected (line number, column, token) of each match, from
    the whole-buffer answer that docs/matching.md defines.
    """
    body = big_text(size)
    body = body[: body.rindex(b"\n") + 1]
    middle = body.index(b"\n", len(body) // 2) + 1
    content = (
        b"TOKEN-first line\n" + body[:middle] + b"xx TOKEN-middle\n" + body[middle:] + b"TOKEN-last"
    )
    lines = content.decode().split("\n")
    expected = [
        (n, m.start() + 1, m.group())
        for n, line in enumerate(lines, 1)
        for m in regex.finditer(TOKEN, line)
    ]
    return content, expected


def leftovers(tmp: Path) -> list[str]:
    """Clone directories gistscan left in `tmp`."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(huge.CLONE_PREFIX))


HAS_PROC = Path("/proc/self/cmdline").exists()


def processes_mentioning(*needles: str) -> list[str]:
    """Command lines of live processes naming any of `needles` (zombies have none).

    Always empty where there is no /proc to read them from.
    """
    found = []
    for proc in Path("/proc").iterdir() if HAS_PROC else ():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, UnicodeDecodeError):
                continue
            if any(needle in cmdline for needle in needles):
                found.append(cmdline)
    return found


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory that is tempfile's too, for clones made in this process."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture
def clones(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs gistscan clones, in order (a spy around the real clone)."""
    urls: list[str] = []
    real = huge._Clone._clone

    async def spy(self: huge._Clone, git: str, url: str) -> None:
        urls.append(url)
        await real(self, git, url)

    monkeypatch.setattr(huge._Clone, "_clone", spy)
    return urls


@dataclass
class Silent:
    """A loopback HTTP server that takes git's requests and never answers them."""

    url: str
    asked: asyncio.Event


@pytest.fixture
async def silent() -> AsyncIterator[Silent]:
    asked = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.set()
        await reader.read()  # until git hangs up (it is killed)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Silent(f"http://127.0.0.1:{port}/never.git", asked)
    finally:
        server.close()
        await server.wait_closed()


async def records_of(fake: FakeGitHub, login: str, **settings: Any) -> list[Record]:
    query = Query(login, TOKEN)
    settings = {"git_protocols": PROTOCOLS, **settings}
    async with aclosing(search(query, Settings(api_url=fake.api_url, **settings))) as stream:
        return [record async for record in stream]


def matches_of(records: list[Any]) -> list[tuple[str, str, int, int, str]]:
    return sorted(
        (r["gist_id"], r["filename"], r["line_number"], r["column"], r["match"])
        for r in records
        if r["type"] == "match"
    )


def many_files(n: int) -> list[FakeFile]:
    return [FakeFile(f"f{j:03d}.txt", f"file {j}\nTOKEN-{j:03d}\n".encode()) for j in range(n)]


async def test_file_over_10_mb_is_read_from_git_with_exact_matches(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    """A 12 MB file that raw refuses (403) is scanned from the clone, its matches exact."""
    content, expected = big_file(12 * 1024 * 1024)
    assert len(content) > RAW_LIMIT + 1024 * 1024
    small = FakeFile("small.txt", b"TOKEN-small\n")
    fake.add_user("huge", [FakeGist("a" * 20, [FakeFile("big.txt", content), small])])
    run = await gistscan(
        "search", "huge", TOKEN, "--api-url", fake.api_url, "--json",
        env={"TMPDIR": str(tmp_path), **GIT_ENV},
    )  # fmt: skip
    assert run.code == 0, run.err
    assert matches_of(run.records) == sorted(
        [("a" * 20, "big.txt", *match) for match in expected]
        + [("a" * 20, "small.txt", 1, 1, "TOKEN-small")]
    )
    last_line = content.count(b"\n") + 1  # the first line, one in the middle, the last one
    assert [(n, col) for n, col, _ in expected] == [(1, 1), (expected[1][0], 4), (last_line, 1)]
    big = [r for r in run.records if r.get("filename") == "big.txt"]
    listed_raw_url = next(r["raw_url"] for r in big)
    assert "/raw/huge/" in listed_raw_url  # the listed raw_url, as for any listed file
    assert {r["raw_url"] for r in big} == {listed_raw_url}
    assert run.summary["files"] == 2
    assert run.summary["complete"] is True
    # Bytes read through git count, as raw bytes do.
    assert run.summary["bytes"] == len(content) + len(small.content)
    assert (fake.requests["raw_403"], fake.requests["raw"]) == (1, 1)
    assert leftovers(tmp_path) == []


async def test_truncated_gist_unlisted_files_are_read_from_git_once(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    """Files a 303-file gist leaves unlisted are scanned from git; listed ones only from raw."""
    fake.add_user("wide", [FakeGist("b" * 20, many_files(303))])
    run = await gistscan(
        "search", "wide", TOKEN, "--api-url", fake.api_url, "--json",
        env={"TMPDIR": str(tmp_path), **GIT_ENV},
    )  # fmt: skip
    assert run.code == 0, run.err
    assert matches_of(run.records) == [
        ("b" * 20, f"f{j:03d}.txt", 2, 1, f"TOKEN-{j:03d}") for j in range(303)
    ]
    unlisted = [r for r in run.records if r.get("filename") in ("f300.txt", "f301.txt", "f302.txt")]
    assert [r["raw_url"] for r in unlisted] == [
        f"https://gist.github.com/{'b' * 20}#file-f{j}-txt" for j in (300, 301, 302)
    ]
    assert run.summary["files"] == 303
    assert run.summary["complete"] is True
    assert fake.requests["raw"] == 300
    assert leftovers(tmp_path) == []


async def test_one_clone_serves_a_big_listed_file_and_the_unlisted_ones(
    fake: FakeGitHub, tmp: Path, clones: list[str]
) -> None:
    """A truncated gist whose listed files include one over 10 MB is cloned once, for both."""
    content, expected = big_file(RAW_LIMIT + 1)
    files = [FakeFile("big.txt", content), *many_files(301)]
    fake.add_user("both", [FakeGist("c" * 20, files)])
    clones_ok = REGISTRY.get_sample_value("gistscan_git_clones_total", {"result": "ok"}) or 0
    git_bytes = REGISTRY.get_sample_value("gistscan_downloaded_bytes_total", {"host": "git"}) or 0
    records = await records_of(fake, "both")
    found = {(r.filename, r.line_number) for r in records if isinstance(r, Match)}
    assert found == {("big.txt", n) for n, _, _ in expected} | {
        (f"f{j:03d}.txt", 2) for j in range(301)
    }
    assert len([r for r in records if isinstance(r, Match)]) == len(found)
    assert len(clones) == 1
    assert (fake.requests["raw_403"], fake.requests["raw"]) == (1, 299)
    assert isinstance(summary := records[-1], Summary)
    assert (summary.files, summary.errors, summary.complete) == (302, 0, True)
    assert leftovers(tmp) == []
    from_git = sum(len(f.content) for f in [files[0], *files[300:]])  # big, f299, f300
    assert REGISTRY.get_sample_value("gistscan_git_clones_total", {"result": "ok"}) == clones_ok + 1
    assert (
        REGISTRY.get_sample_value("gistscan_downloaded_bytes_total", {"host": "git"})
        == git_bytes + from_git
    )


async def test_raw_comes_first_even_for_a_file_listed_over_10_mb(
    tmp: Path, clones: list[str]
) -> None:
    """When the raw host does serve a big file, no clone is made."""
    fake = FakeGitHub(raw_limit=2 * RAW_LIMIT, piece_size=1 << 16)
    await fake.start()
    try:
        content, expected = big_file(RAW_LIMIT + 1)
        fake.add_user("lifted", [FakeGist("d" * 20, [FakeFile("big.txt", content)])])
        records = await records_of(fake, "lifted")
    finally:
        await fake.close()
    found = [(r.line_number, r.column, r.match) for r in records if isinstance(r, Match)]
    assert found == expected
    assert (clones, fake.requests["raw"], fake.requests["raw_403"]) == ([], 1, 0)


async def test_without_git_huge_gists_are_too_large_and_the_rest_is_scanned(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    """PATH without git: the big file and the truncated gist get too_large records; exit 2."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    fake.add_user("nogit", [
        FakeGist("e" * 20, [FakeFile("big.txt", b"TOKEN-big\n" * (RAW_LIMIT // 10 + 1))]),
        FakeGist("f" * 20, many_files(301)),
        FakeGist("0" * 20, [FakeFile("plain.txt", b"TOKEN-plain\n")]),
    ])  # fmt: skip
    run = await gistscan(
        "search", "nogit", TOKEN, "--api-url", fake.api_url, "--json",
        env={"PATH": str(bin_dir), "TMPDIR": str(tmp_path), **GIT_ENV},
    )  # fmt: skip
    assert run.code == 2
    errors = sorted(
        (e["gist_id"], e["filename"], e["code"], e["message"])
        for e in run.records
        if e["type"] == "error"
    )
    assert [e[:3] for e in errors] == [
        ("e" * 20, "big.txt", "too_large"),
        ("f" * 20, None, "too_large"),
    ]
    assert "over GitHub's 10 MB raw limit" in errors[0][3]
    assert "more files than the 300 GitHub lists" in errors[1][3]
    assert all("git is not installed" in e[3] for e in errors)
    assert ("0" * 20, "plain.txt", 1, 1, "TOKEN-plain") in matches_of(run.records)
    assert len(matches_of(run.records)) == 1 + 300  # the plain file and the listed 300
    assert run.summary["files"] == 301
    assert (run.summary["errors"], run.summary["complete"]) == (2, False)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("stop", ["cancel", "deadline"])
async def test_a_search_stopped_mid_clone_leaves_no_directory_or_process(
    fake: FakeGitHub, tmp: Path, silent: Silent, stop: str
) -> None:
    """Cancelled (or out of its deadline) while git clones: git is killed, its directory gone."""
    big = FakeFile("big.txt", b"x" * (RAW_LIMIT + 1))  # raw refuses it: it needs the clone
    fake.add_user("stuck", [FakeGist("1" * 20, [big], git_pull_url=silent.url)])
    settings = {"deadline": 2.0} if stop == "deadline" else {}
    task = asyncio.create_task(records_of(fake, "stuck", **settings))
    await asyncio.wait_for(silent.asked.wait(), 20)
    [clone_dir] = leftovers(tmp)
    # git and its http helper, mid-clone
    assert processes_mentioning(clone_dir, silent.url) or not HAS_PROC
    if stop == "cancel":
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        records = await asyncio.wait_for(task, 20)
        assert [(r.gist_id, r.code) for r in records if isinstance(r, Error)] == [
            (None, "deadline_exceeded")
        ]
    assert leftovers(tmp) == []
    assert processes_mentioning(clone_dir, silent.url) == []


async def test_ctrl_c_mid_clone_kills_git_and_removes_the_clone(
    fake: FakeGitHub, tmp_path: Path, silent: Silent
) -> None:
    """SIGINT to the CLI while git clones: exit 130, git gone, its directory gone."""
    big = FakeFile("big.txt", b"x" * (RAW_LIMIT + 1))
    fake.add_user("stuck", [FakeGist("8" * 20, [big], git_pull_url=silent.url)])
    proc = await interruptible(
        "search", "stuck", TOKEN, "--api-url", fake.api_url,
        env={"TMPDIR": str(tmp_path), **GIT_ENV},
    )  # fmt: skip
    await asyncio.wait_for(silent.asked.wait(), 20)
    assert len(leftovers(tmp_path)) == 1
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert (proc.returncode, "Traceback" in err.decode()) == (130, False)
    assert leftovers(tmp_path) == []
    assert processes_mentioning(silent.url) == []


async def test_clone_timeout_is_an_upstream_error_record(
    fake: FakeGitHub, tmp: Path, silent: Silent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone over its time budget: git killed, an upstream_error for the gist, scan goes on."""
    monkeypatch.setattr(huge, "CLONE_TIMEOUT", 0.5)
    fake.add_user("slow", [FakeGist("2" * 20, many_files(301), git_pull_url=silent.url)])
    records = await records_of(fake, "slow")
    errors = [r for r in records if isinstance(r, Error)]
    assert [(e.gist_id, e.filename, e.code) for e in errors] == [("2" * 20, None, "upstream_error")]
    assert "took over 0.5 s" in errors[0].message
    assert len([r for r in records if isinstance(r, Match)]) == 300
    assert leftovers(tmp) == []
    assert processes_mentioning(silent.url) == []


async def test_clone_failure_is_an_upstream_error_for_the_file(fake: FakeGitHub, tmp: Path) -> None:
    """A clone git cannot make fails the file that needed it, naming git's reason."""
    big = FakeFile("big.txt", b"x" * (RAW_LIMIT + 1))
    url = (tmp / "no-such.git").as_uri()
    fake.add_user("gone", [
        FakeGist("3" * 20, [big], git_pull_url=url),
        FakeGist("4" * 20, [FakeFile("ok.txt", b"TOKEN-ok\n")]),
    ])  # fmt: skip
    records = await records_of(fake, "gone")
    [error] = [r for r in records if isinstance(r, Error)]
    assert (error.gist_id, error.filename, error.code) == ("3" * 20, "big.txt", "upstream_error")
    assert f"git clone of {url} failed" in error.message
    assert [r.match for r in records if isinstance(r, Match)] == ["TOKEN-ok"]
    assert leftovers(tmp) == []


async def huge_part(
    fake: FakeGitHub, login: str, *, chunk_size: int, protocols: str
) -> tuple[list[FileEvent], dict[str, list[bytes]]]:
    """huge_files on the user's one gist, as listed: its events, and the chunks of each file."""
    chunks_seen: dict[str, list[bytes]] = {}

    async def keep(chunks: AsyncGenerator[bytes, None], file: GistFile) -> AsyncGenerator[Any]:
        async with aclosing(chunks):
            chunks_seen[file.filename] = [chunk async for chunk in chunks]
        yield FileDone(file, "scanned")

    async with aiohttp.ClientSession() as session:
        gh = GitHub(session, api_url=fake.api_url)
        async with aclosing(listing.gists(listing.pages(gh, login))) as gists:
            [gist] = [gist async for gist in gists]
        events = huge.huge_files(
            gist,
            raw=lambda f: gh.iter_raw(f.raw_url, chunk_size=chunk_size, size=f.size),
            scan=keep,
            chunk_size=chunk_size,
            protocols=protocols,
        )
        async with aclosing(events):
            return [event async for event in events], chunks_seen


async def test_git_chunks_are_exact_sizes_and_bytes(fake: FakeGitHub, tmp: Path) -> None:
    """Files read from git come in chunks of exactly chunk_size, as raw's do."""
    odd = FakeFile("z odd.bin", bytes(range(256)) * 14 + b"\r\n\x00tail")
    fake.add_user("exact", [FakeGist("5" * 20, [*many_files(300), odd])])
    events, seen = await huge_part(fake, "exact", chunk_size=1000, protocols="file")
    assert [(e.file.filename, e.outcome) for e in events if isinstance(e, FileDone)] == [
        ("z odd.bin", "scanned")
    ]
    assert [len(c) for c in seen["z odd.bin"]] == [1000, 1000, 1000, 591]
    assert b"".join(seen["z odd.bin"]) == odd.content
    assert leftovers(tmp) == []


async def test_git_may_use_only_the_allowed_protocols(fake: FakeGitHub, tmp: Path) -> None:
    """A git_pull_url outside the allowed protocols is refused before git runs."""
    fake.add_user("far", [FakeGist("9" * 20, many_files(301))])
    events, seen = await huge_part(fake, "far", chunk_size=1000, protocols="https")
    [error] = events
    assert isinstance(error, Error)
    assert (error.gist_id, error.filename, error.code) == ("9" * 20, None, "invalid_response")
    assert "is not a URL git may clone (allowed: https;" in error.message
    assert seen == {}
    assert leftovers(tmp) == []


async def test_git_clones_over_https_only_by_default_whatever_the_api_root(
    fake: FakeGitHub, tmp: Path, clones: list[str]
) -> None:
    """The fake is not api.github.com, and its gists clone from file://: by default, refused."""
    assert Settings().git_protocols == "https"
    fake.add_user("local", [FakeGist("a" * 20, many_files(301))])
    query = Query("local", TOKEN)
    async with aclosing(search(query, Settings(api_url=fake.api_url))) as stream:
        records = [record async for record in stream]
    [error] = [r for r in records if isinstance(r, Error)]
    assert (error.filename, error.code) == (None, "invalid_response")
    assert len([r for r in records if isinstance(r, Match)]) == 300  # the listed ones, from raw
    assert clones == []


async def test_raw_403_on_a_small_file_is_upstream_error_not_too_large(
    tmp: Path, clones: list[str]
) -> None:
    """A 403 is too_large only for a file listed over 10 MB; a small one is not cloned."""
    fake = FakeGitHub(raw_limit=10)  # the fake refuses anything over 10 bytes
    await fake.start()
    try:
        fake.add_user("shy", [FakeGist("6" * 20, [FakeFile("small.txt", b"TOKEN-small\n")])])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{fake.api_url}/users/shy/gists") as resp:
                raw_url = (await resp.json())[0]["files"]["small.txt"]["raw_url"]
            gh = GitHub(session, api_url=fake.api_url, retries=0)
            codes = []
            for size in (12, None, RAW_LIMIT, RAW_LIMIT + 1):
                with pytest.raises(FetchError) as caught:
                    async for _ in gh.iter_raw(raw_url, chunk_size=100, size=size):
                        pass
                codes.append((caught.value.code, caught.value.status))
        records = await records_of(fake, "shy")
    finally:
        await fake.close()
    assert codes == [("upstream_error", 403)] * 3 + [("too_large", 403)]
    [error] = [r for r in records if isinstance(r, Error)]
    assert (error.filename, error.code) == ("small.txt", "upstream_error")
    assert "403" in error.message
    assert clones == []


def test_unlisted_url_is_the_file_anchor_on_the_gist_page() -> None:
    """An unlisted file's raw_url: the gist page's #file- anchor, GitHub style."""
    gist = Gist("7" * 20, "https://gist.github.com/7777", None, True, ())
    assert (
        huge.unlisted_url(gist, "Hello World.PY")
        == "https://gist.github.com/7777#file-hello-world-py"
    )
    assert (
        huge.unlisted_url(gist, "a_b-c.tar.gz") == "https://gist.github.com/7777#file-a_b-c-tar-gz"
    )
