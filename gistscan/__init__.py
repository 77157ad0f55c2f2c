"""gistscan: which of a GitHub user's public gists contain this regular expression, and where."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gistscan.config import Query, Settings
    from gistscan.errors import GistscanError, ListingError, UsageError
    from gistscan.pipeline import search
    from gistscan.records import Context, Error, Match, Record, Summary, encode, to_dict

__version__ = "0.1.0"

# Imported on first use (PEP 562): `gistscan --help` and `--version` need none of aiohttp or
# regex, and a Ctrl-C while they load is the command line's to catch.
_EXPORTS = {
    "Context": "gistscan.records",
    "Error": "gistscan.records",
    "GistscanError": "gistscan.errors",
    "ListingError": "gistscan.errors",
    "Match": "gistscan.records",
    "Query": "gistscan.config",
    "Record": "gistscan.records",
    "Settings": "gistscan.config",
    "Summary": "gistscan.records",
    "UsageError": "gistscan.errors",
    "encode": "gistscan.records",
    "search": "gistscan.pipeline",
    "to_dict": "gistscan.records",
}
__all__ = [
    "Context",
    "Error",
    "GistscanError",
    "ListingError",
    "Match",
    "Query",
    "Record",
    "Settings",
    "Summary",
    "UsageError",
    "encode",
    "search",
    "to_dict",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gistscan' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
