"""gistscan: which of a GitHub user's public gists contain this regular expression, and where."""

from gistscan.config import Query, Settings
from gistscan.errors import GistscanError, ListingError, UsageError
from gistscan.pipeline import search
from gistscan.records import Error, Match, Record, Summary, encode, to_dict

__all__ = [
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
__version__ = "0.1.0"
