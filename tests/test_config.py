"""Settings: built once from flags and environment variables, validated, frozen."""

from __future__ import annotations

import pytest

from gistscan.config import SETTINGS_ENV, Settings
from gistscan.errors import UsageError


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
        ({"GISTSCAN_CONCURRENCY": "0"}, "GISTSCAN_CONCURRENCY: concurrency must be a positive"),
        ({"GISTSCAN_API_URL": "ftp://x"}, "GISTSCAN_API_URL: the API URL must start with"),
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
