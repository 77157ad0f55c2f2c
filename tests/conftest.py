"""Shared fixtures: a fake GitHub on loopback for every test that needs one."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.fake_github import FakeGitHub
from tests.hostile_github import HostileGitHub


@pytest.fixture
async def fake() -> AsyncIterator[FakeGitHub]:
    """A started fake GitHub on 127.0.0.1 (no latency); closed after the test."""
    github = FakeGitHub()
    await github.start()
    try:
        yield github
    finally:
        await github.close()


MakeFake = Callable[..., Awaitable[FakeGitHub]]


@pytest.fixture
async def make_fake() -> AsyncIterator[MakeFake]:
    """Start fakes with any constructor options (latency, faults...); all closed afterwards."""
    fakes: list[FakeGitHub] = []

    async def start(**options: Any) -> FakeGitHub:
        github = FakeGitHub(**options)
        await github.start()
        fakes.append(github)
        return github

    yield start
    for github in fakes:
        await github.close()


@pytest.fixture
async def hostile(tmp_path: Any) -> AsyncIterator[HostileGitHub]:
    """A started hostile fake GitHub; its git URLs point into `tmp_path / "evil"`."""
    evil = tmp_path / "evil"
    evil.mkdir()
    github = HostileGitHub(str(evil))
    await github.start()
    try:
        yield github
    finally:
        await github.close()


def require_git() -> str:
    """The path of git; where it is missing, the test fails saying so (never silently)."""
    path = shutil.which("git")
    if path is None:
        pytest.fail(
            "this test needs git on PATH (Debian/Ubuntu: apt-get install git): gistscan"
            " reads huge gists through `git clone`, and the fake GitHub builds their"
            " repositories with git",
            pytrace=False,
        )
    return path
