"""Schemathesis hooks for `tests.api_fuzz` (loaded through SCHEMATHESIS_HOOKS).

The OpenAPI document marks a glob with `format: glob` (ripgrep's glob rules, docs/cli.md):
no JSON Schema pattern can say which character classes and `{a,b}` groups are well formed,
so the fuzzer is taught the format here, and its "schema-valid input is accepted" check
then holds the server to it. Each generated glob is kept only when the server's own
parser takes it, so a grammar slip here can never be blamed on the server.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from gistscan.errors import UsageError
from gistscan.filters import MAX_FILTER_LENGTH, compile_glob

_SPECIAL = "\\[]{}*?,!-"
_plain = st.characters(blacklist_characters=_SPECIAL, blacklist_categories=["Cs"])
_escaped = st.characters(blacklist_categories=["Cs"]).map(lambda c: "\\" + c)


@st.composite
def _class(draw: st.DrawFn) -> str:
    items = []
    for _ in range(draw(st.integers(1, 4))):
        low, high = sorted(draw(st.tuples(_plain, _plain)))
        items.append(low if draw(st.booleans()) else f"{low}-{high}")
    return "[" + draw(st.sampled_from(["", "!", "^"])) + "".join(items) + "]"


_token = st.one_of(_plain, _escaped, st.sampled_from(["*", "?", "**"]), _class())
_run = st.lists(_token, min_size=1, max_size=5).map("".join)
_group = st.lists(_run, min_size=1, max_size=3).map(lambda alts: "{" + ",".join(alts) + "}")


def _valid(glob: str) -> bool:
    if len(glob) > MAX_FILTER_LENGTH or not glob.strip("! \t"):
        return False
    try:
        compile_glob(glob.removeprefix("!"))
    except UsageError:
        return False
    return True


GLOBS = (
    st.tuples(
        st.sampled_from(["", "!"]),
        st.lists(st.one_of(_token, _group), min_size=1, max_size=6).map("".join),
    )
    .map("".join)
    .filter(_valid)
)

schemathesis.openapi.format("glob", GLOBS)
