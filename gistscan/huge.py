"""Stage three for huge gists: what the raw host will not give, read from a shallow git clone.

GitHub serves a raw file only up to 10 MB (larger ones get 403) and lists at most 300 files
of a gist (then `truncated: true`); both are reachable only through `git clone` of the gist's
`git_pull_url` (docs/github.md §2). The clone is bare: each file's bytes are streamed
from `git cat-file blob`, so they are exactly the committed bytes (no checkout applies the
gist's own `.gitattributes`: eol conversion, filters, working-tree encodings), nothing is
written twice to disk, and no name from the gist ever becomes a path on ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass

from gistscan.errors import FetchError, shown_url
from gistscan.files import FileEvent
from gistscan.github import RAW_LIMIT
from gistscan.listing import Gist, GistFile
from gistscan.metrics import DOWNLOADED_BYTES, GIT_CLONES
from gistscan.records import Error

CLONE_PREFIX = "gistscan-clone-"  # temporary directories of clones, in tempfile.gettempdir()
CLONE_TIMEOUT = 300.0  # seconds one `git clone` may take
_KILL_WAIT = 1.0  # seconds to wait for a killed git to be reaped

Scan = Callable[[AsyncGenerator[bytes, None], GistFile], AsyncGenerator[FileEvent, None]]


def over_raw_limit(file: GistFile) -> bool:
    """Whether GitHub's raw host may refuse the file: it is listed over 10 MB."""
    return file.size > RAW_LIMIT


def needs_git(gist: Gist) -> bool:
    """Whether part of the gist may be out of raw's reach: a file over 10 MB, or unlisted ones."""
    return gist.truncated or any(over_raw_limit(f) for f in gist.files)


def unlisted_url(gist: Gist, filename: str) -> str:
    """What a match in an unlisted file gives as `raw_url`: the file's anchor on the gist page.

    GitHub gives no raw URL for a file it leaves out of the listing (and rebuilding one by
    hand is what docs/github.md §3 warns against), so this points a reader at the file on
    the gist's page; the anchor follows GitHub's `#file-<name>` form, lower-cased, other
    characters as `-`.
    """
    return f"{gist.html_url}#file-{re.sub(r'[^a-z0-9_-]', '-', filename.lower())}"


async def huge_files(
    gist: Gist,
    *,
    raw: Callable[[GistFile], AsyncGenerator[bytes, None]],
    scan: Scan,
    chunk_size: int,
    clone_timeout: float | None = CLONE_TIMEOUT,
    protocols: str = "https",
    received: Callable[[int], None] | None = None,
) -> AsyncGenerator[FileEvent, None]:
    """Scan the part of `gist` the raw host may not give; yield each file's events in turn.

    That part is the files listed over 10 MB, each tried on raw first (`raw(file)`) and read
    from git only when raw refuses it as too large, before any byte; then, when the listing
    is truncated, the files of the clone that the listing does not name (the listed ones are
    scanned from raw by the caller, so no file is reported twice). `scan(chunks, file)` scans
    one file. One shallow clone, made on first need and only then, serves all of them; its
    files come in chunks of exactly `chunk_size` bytes, as raw's do. `clone_timeout` bounds
    the clone (per clone; None: no bound); `protocols` is git's GIT_ALLOW_PROTOCOL list
    (`:`-separated): a `git_pull_url` of another scheme, or a local path, is never given to
    git. `received(n)` is told of each chunk's size read from git.

    Each file's own failure is an `error` record from `scan`: `too_large` naming the reason
    when git is not installed, `upstream_error` when the clone fails. When the unlisted files
    cannot be read, the gist gets one `error` record with `filename` null. Raises nothing of
    its own. When this generator ends, is closed or is cancelled, a git still running is
    killed with its helpers and the clone's temporary directory is removed.
    """
    clone = _Clone(gist.git_pull_url, timeout=clone_timeout, protocols=protocols, received=received)
    try:
        for file in gist.files:
            if over_raw_limit(file):
                chunks = _raw_then_git(raw(file), file, clone, chunk_size)
                async with aclosing(scan(chunks, file)) as events:
                    async for event in events:
                        yield event
        if not gist.truncated:
            return
        why = f"gist {gist.id} has more files than the {len(gist.files)} GitHub lists"
        try:
            blobs = await clone.blobs(why)
        except FetchError as exc:
            yield Error(gist.id, None, exc.code, exc.message)
            return
        listed = {file.filename for file in gist.files}
        for name in sorted(blobs.keys() - listed):
            file = GistFile(
                gist_id=gist.id,
                filename=name,
                raw_url=unlisted_url(gist, name),
                size=blobs[name].size,
                html_url=gist.html_url,
            )
            async with aclosing(scan(clone.chunks(name, why, chunk_size), file)) as events:
                async for event in events:
                    yield event
    finally:
        clone.remove()


async def _raw_then_git(
    raw: AsyncGenerator[bytes, None], file: GistFile, clone: _Clone, chunk_size: int
) -> AsyncGenerator[bytes, None]:
    """The file's bytes from raw, or from the clone when raw refuses it before its first byte.

    The switch happens only before any byte was yielded, so a file is never read from both.
    """
    async with aclosing(raw):
        try:
            first = await anext(raw, None)
        except FetchError as exc:
            if exc.code != "too_large":
                raise
        else:
            if first is not None:
                yield first
                async for chunk in raw:
                    yield chunk
            return
    why = f"{file.filename} is over GitHub's 10 MB raw limit ({file.size} bytes)"
    async with aclosing(clone.chunks(file.filename, why, chunk_size)) as chunks:
        async for chunk in chunks:
            yield chunk


@dataclass(frozen=True, slots=True)
class _Blob:
    sha: str
    size: int


class _Clone:
    """A gist's repository, cloned (bare, depth 1) on first need into a temporary directory.

    Invariants: `_dir` is None until the first `blobs()`, then names a directory that exists
    until `remove()`; `_blobs` (the files of HEAD) is set once the clone is complete; a failed
    clone is kept in `_failure` and raised again, never retried within one gist.
    """

    def __init__(
        self,
        url: str | None,
        *,
        timeout: float | None,
        protocols: str,
        received: Callable[[int], None] | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.protocols = protocols
        self.received = received
        self._git: str | None = None
        self._dir: str | None = None
        self._blobs: dict[str, _Blob] | None = None
        self._failure: FetchError | None = None

    @property
    def _repo(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "gist.git")

    async def blobs(self, why: str) -> dict[str, _Blob]:
        """The files of the gist's HEAD by name, cloning first if needed.

        Raises `FetchError`: `too_large` (message: `why`, and that git is missing) when git
        is not installed; `invalid_response` when there is no `git_pull_url` or it is not a
        URL of an allowed protocol; `upstream_error` when the clone fails or times out.
        """
        if self._blobs is not None:
            return self._blobs
        if self._failure is not None:
            raise self._failure
        # Looked up per call: the reason git was needed differs by caller.
        self._git = shutil.which("git")
        if self._git is None:
            raise FetchError("too_large", f"{why}, and git is not installed to clone the gist")
        try:
            if self.url is None:
                raise FetchError("invalid_response", f"{why}, and GitHub gave no git_pull_url")
            _check_url(self.url, self.protocols, why)
            self._dir = tempfile.mkdtemp(prefix=CLONE_PREFIX)
            try:
                await self._clone(self._git, self.url)
                self._blobs = await self._ls_tree(self._git)
            finally:
                GIT_CLONES.labels("failed" if self._blobs is None else "ok").inc()
        except FetchError as exc:
            self._failure = exc
            raise
        except OSError as exc:  # no disk space, git vanished from PATH, ...
            self._failure = FetchError("upstream_error", f"could not clone {self.url}: {exc}")
            raise self._failure from exc
        return self._blobs

    async def _clone(self, git: str, url: str) -> None:
        # No templates (hook samples): fewer files to write and remove. `--` ends the
        # options, so a URL is never taken for one.
        args = ["clone", "--bare", "--depth", "1", "--no-tags", "--quiet", "--template="]
        args += ["--", url, self._repo]
        async with _git(git, *args, protocols=self.protocols) as proc:
            try:
                async with asyncio.timeout(self.timeout):
                    _, err = await proc.communicate()
            except TimeoutError:
                raise FetchError(
                    "upstream_error", f"git clone of {url} took over {self.timeout:g} s"
                ) from None
        if proc.returncode != 0:
            raise FetchError("upstream_error", f"git clone of {url} failed: {_last_line(err)}")

    async def _ls_tree(self, git: str) -> dict[str, _Blob]:
        args = ["--git-dir", self._repo, "ls-tree", "-z", "-l", "HEAD"]
        async with _git(git, *args, protocols=self.protocols) as proc:
            out, err = await proc.communicate()
        if proc.returncode != 0:
            raise FetchError(
                "upstream_error", f"git could not list the files of {self.url}: {_last_line(err)}"
            )
        blobs = {}
        for entry in filter(None, out.split(b"\0")):
            meta, _, name = entry.partition(b"\t")
            mode, kind, sha, size = meta.split()
            # Regular files only: a symlink's blob is its target's name, a gist has no folders.
            if kind == b"blob" and mode in (b"100644", b"100755"):
                blobs[name.decode("utf-8", "replace")] = _Blob(sha.decode(), int(size))
        return blobs

    async def chunks(self, name: str, why: str, chunk_size: int) -> AsyncGenerator[bytes, None]:
        """The bytes of file `name` in chunks of exactly `chunk_size` (the last one shorter).

        Streamed from `git cat-file` (never whole in memory). Raises `FetchError`: those of
        `blobs(why)`, `not_found` when HEAD has no such file, `upstream_error` when git fails.
        """
        blob = (await self.blobs(why)).get(name)
        if blob is None:
            raise FetchError("not_found", f"{name} is not in the gist's git repository")
        assert self._git is not None
        args = ["--git-dir", self._repo, "cat-file", "blob", blob.sha]
        got = 0
        async with _git(self._git, *args, protocols=self.protocols, stderr=False) as proc:
            assert proc.stdout is not None
            while True:
                try:
                    chunk = await proc.stdout.readexactly(chunk_size)
                except asyncio.IncompleteReadError as short:
                    chunk = short.partial
                if chunk:
                    got += len(chunk)
                    DOWNLOADED_BYTES.labels("git").inc(len(chunk))
                    if self.received is not None:
                        self.received(len(chunk))
                    yield chunk
                if len(chunk) < chunk_size:
                    break
            await proc.wait()
        if proc.returncode != 0 or got != blob.size:
            raise FetchError(
                "upstream_error",
                f"git gave {got} of the {blob.size} bytes of {name} (exit {proc.returncode})",
            )

    def remove(self) -> None:
        """Remove the clone's directory (a no-op before the first `blobs()` and after)."""
        if self._dir is None:
            return
        # Synchronous on purpose: it runs on cancellation too, where an await could be cut
        # short and leave the directory behind. A bare shallow clone is a handful of files
        # (measured: 4-12 ms to remove the clone of a 12 MB gist).
        shutil.rmtree(self._dir, ignore_errors=True)
        if os.path.lexists(self._dir):
            # A helper of a git killed mid-clone may finish one last file system call (a
            # create) after SIGKILL: give it a moment, once. (Waiting for the group to be
            # gone does not work: orphans stay zombies wherever PID 1 does not reap.)
            time.sleep(0.05)
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None


def _check_url(url: str, protocols: str, why: str) -> None:
    """Refuse a `git_pull_url` that is not a URL of an allowed protocol before git sees it.

    GIT_ALLOW_PROTOCOL would refuse most of them too, but a local path (or something that
    git takes for an option or a transport helper: `ext::`, `fd::`) is never worth a process.
    A URL with a user name or password in it is refused too (GitHub's never has one).
    """
    scheme, sep, _ = url.partition("://")
    shown = shown_url(url)[:200]
    if not sep or scheme.lower() not in protocols.split(":"):
        raise FetchError(
            "invalid_response",
            f"{why}, and its git_pull_url {shown!r} is not a URL git may clone"
            f" (allowed: {protocols.replace(':', ', ')}; the git_protocols setting)",
        )
    if shown_url(url) != url:  # git would use them, and they would be printed
        raise FetchError(
            "invalid_response",
            f"{why}, and its git_pull_url {shown!r} holds a user name or password",
        )


def _git_env(protocols: str) -> dict[str, str]:
    # The environment is passed through for proxies and locale, but nothing that could point
    # git at another repository (GIT_DIR, ...), a credential, a prompt or the user's config.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "SSH_ASKPASS"}
    return env | {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": protocols,
    }


@contextlib.asynccontextmanager
async def _git(
    git: str, *args: str, protocols: str, stderr: bool = True
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run `git ARGS` (stdout piped); on leaving, kill it and its helpers if still running.

    git runs in a process group of its own, so that the helpers `git clone` starts
    (index-pack, upload-pack, remote-https) are killed with it: one left running could write
    into the directory being removed.
    """
    proc = await asyncio.create_subprocess_exec(
        git,
        "-c",
        "credential.helper=",  # no stored credential is ever offered
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr else asyncio.subprocess.DEVNULL,
        env=_git_env(protocols),
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            await _kill_group(proc)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    # Bounded: asyncio's wait() also waits for the pipes to close, which a stray holder of
    # them could delay; the whole group was sent SIGKILL, so this is quick in every sane case.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), _KILL_WAIT)


def _last_line(err: bytes | None) -> str:
    lines = (err or b"").decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:500] if lines else "no message"
