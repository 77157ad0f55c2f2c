"""Shared fixtures: a fake GitHub on loopback for every test that needs one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fake_github import FakeGitHub


@pytest.fixture
async def fake() -> AsyncIterator[FakeGitHub]:
    """A started fake GitHub on 127.0.0.1 (no latency); closed after the test."""
    github = FakeGitHub()
    await github.start()
    try:
        yield github
    finally:
        await github.close()
