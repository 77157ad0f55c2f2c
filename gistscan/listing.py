"""Stages one and two: a user's list pages, followed by their Link URLs, and the gists on them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from gistscan.errors import ListingError, shown_url
from gistscan.github import GitHub, Page


@dataclass(frozen=True, slots=True)
class GistFile:
    """One file of a gist, as the listing gives it (`raw_url` is used exactly as given)."""

    gist_id: str
    filename: str
    raw_url: str
    size: int
    html_url: str
    language: str | None = None  # GitHub's detection, as listed (None: not detected)


@dataclass(frozen=True, slots=True)
class Gist:
    """One gist: its files, and whether GitHub left files out of the listing (over 300)."""

    id: str
    html_url: str
    git_pull_url: str | None
    truncated: bool
    files: tuple[GistFile, ...]


async def first_page(
    github: GitHub, username: str, *, per_page: int = 100, since: str | None = None
) -> Page:
    """Page one of the user's gist list (only gists updated since `since`, when given).

    Raises `ListingError` (`not_found` names the user)."""
    try:
        return await github.get_page(github.user_gists_url(username, per_page, since))
    except ListingError as exc:
        if exc.code != "not_found":
            raise
        raise ListingError("not_found", f"GitHub has no user {username!r}", status=404) from None


async def pages(
    github: GitHub,
    username: str,
    *,
    per_page: int = 100,
    max_pages: int = 100,
    since: str | None = None,
    first: Page | None = None,
) -> AsyncGenerator[Page, None]:
    """Yield the user's list pages in order, following `rel="next"` exactly as given.

    `first`, when the caller already fetched page one (the server does, to answer with a
    real status before streaming), is yielded without asking again. The next page is
    requested as soon as a page arrives, so its latency overlaps the downloads of this
    page's files; closing the generator cancels that request. Raises `ListingError`, after
    yielding the pages read so far: those of `get_page`, `invalid_response` for a Link that
    loops back, `too_large` for a list that goes on past `max_pages` pages.
    """
    page = first or await first_page(github, username, per_page=per_page, since=since)
    seen = {page.url}
    while True:
        upcoming: asyncio.Task[Page] | None = None
        stop: ListingError | None = None
        if page.next_url is None:
            pass
        elif page.next_url in seen:
            stop = ListingError(
                "invalid_response", f"GitHub's Link header loops back to {shown_url(page.next_url)}"
            )
        elif len(seen) >= max_pages:
            stop = ListingError(
                "too_large",
                f"the gist list of {username} goes on past {max_pages} pages (the max_pages"
                " setting); only those were searched",
            )
        else:
            seen.add(page.next_url)
            upcoming = asyncio.create_task(github.get_page(page.next_url))
        try:
            yield page
            if stop is not None:
                raise stop
            if upcoming is None:
                return
            page = await upcoming
        finally:
            if upcoming is not None:
                if not upcoming.done():
                    upcoming.cancel()
                elif not upcoming.cancelled():
                    upcoming.exception()  # retrieved: a closed listing raises nothing


async def gists(pages: AsyncGenerator[Page, None]) -> AsyncGenerator[Gist, None]:
    """Yield the gists of each page as soon as the page arrives, each gist once.

    Offset pages shift while a user's gists are being updated, so a gist may be met on two
    pages: only its first listing counts. Raises `ListingError`.
    """
    seen: set[str] = set()  # bounded: max_pages pages of at most per_page gists
    async with aclosing(pages):
        async for page in pages:
            for item in first_listings(page.items, seen):
                yield _gist(item)


def first_listings(items: list[dict[str, Any]], seen: set[str]) -> list[dict[str, Any]]:
    """The `items` whose gist `id` is not in `seen` yet (once each), adding their ids to it.

    Offset pages shift while a user's gists are being updated: a gist met again on a later
    page is left out. An item with no string `id` is kept (`_gist` refuses it).
    """
    fresh = []
    for item in items:
        gist_id = item.get("id")
        if isinstance(gist_id, str):
            if gist_id in seen:
                continue
            seen.add(gist_id)
        fresh.append(item)
    return fresh


def _gist(item: dict[str, Any]) -> Gist:
    gist_id = item.get("id")
    files = item.get("files")
    if not isinstance(gist_id, str) or not isinstance(files, dict):
        raise ListingError("invalid_response", "a gist in GitHub's list has no id or files")
    html_url = item.get("html_url")
    html_url = html_url if isinstance(html_url, str) else f"https://gist.github.com/{gist_id}"
    out = []
    for name, entry in files.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("raw_url"), str):
            raise ListingError(
                "invalid_response", f"file {name!r} of gist {gist_id} has no raw_url"
            )
        size = entry.get("size")
        filename = entry.get("filename")
        language = entry.get("language")
        out.append(
            GistFile(
                gist_id=gist_id,
                filename=filename if isinstance(filename, str) and filename else name,
                raw_url=entry["raw_url"],
                size=size if type(size) is int else 0,  # not a bool, a float, a string
                html_url=html_url,
                language=language if isinstance(language, str) else None,
            )
        )
    pull = item.get("git_pull_url")
    return Gist(
        id=gist_id,
        html_url=html_url,
        git_pull_url=pull if isinstance(pull, str) else None,
        truncated=item.get("truncated") is True,
        files=tuple(out),
    )
