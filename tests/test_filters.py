"""The -g globs: ripgrep's rules, checked against a table of what ripgrep does, and properties."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gistscan.errors import UsageError
from gistscan.filters import MAX_EXPANSIONS, compile_glob, file_filter

# File names, and what `rg --files --hidden -g GLOB` (ripgrep 13.0.0) listed in a folder
# holding exactly these files; for a glob it refuses, its message (up to any "(maybe ...").
NAMES = [
    "!bang.txt", "-", ".hidden", "A.PY", "]x", "^a", "a*b", "a-b", "a.b.c", "a.py", "a\\]",
    "a\\b", "a]", "aaab", "ab.txt", "abab", "a{b", "b.js", "b.py", "br[a]ck.txt", "c.py",
    "notes.md", "q?", "test_a.py", "x", "x,y", "z", "}",
]  # fmt: skip
RIPGREP: list[tuple[str, list[str] | str]] = [
    ("*.py", ["a.py", "b.py", "c.py", "test_a.py"]),
    ("[^a]*.py", ["b.py", "c.py", "test_a.py"]),
    ("[!a]*.py", ["b.py", "c.py", "test_a.py"]),
    ("[!a].py", ["b.py", "c.py"]),
    ("[^ab].py", ["c.py"]),
    ("br\\[a\\]ck.txt", ["br[a]ck.txt"]),
    ("\\!bang.txt", ["!bang.txt"]),
    ("{a,b}.py", ["a.py", "b.py"]),
    ("*.{py,js}", ["a.py", "b.js", "b.py", "c.py", "test_a.py"]),
    ("{,a}.py", ["a.py"]),
    ("{a,}.py", ["a.py"]),
    ("[]]x", ["]x"]),
    ("a[]]", ["a]"]),
    ("a[\\]]", ["a\\]"]),
    ("[!]]", ["-", "x", "z", "}"]),
    ("[!!]", ["-", "x", "z", "}"]),
    ("[a-c].py", ["a.py", "b.py", "c.py"]),
    ("[--a]", ["-"]),
    ("[a-]", ["-"]),
    ("*a*b", ["a*b", "a-b", "a\\b", "aaab", "abab", "a{b"]),
    ("*a*a*b", ["aaab", "abab"]),
    ("a*b", ["a*b", "a-b", "a\\b", "aaab", "abab", "a{b"]),
    ("?.py", ["a.py", "b.py", "c.py"]),
    ("??.py", []),
    ("a?b", ["a*b", "a-b", "a\\b", "a{b"]),
    ("a.*", ["a.b.c", "a.py"]),
    ("*.*.*", ["a.b.c"]),
    ("\\*", []),
    ("a\\*b", ["a*b"]),
    ("\\q?", ["q?"]),
    ("q\\?", ["q?"]),
    ("{x\\,y}", ["x,y"]),
    ("x,y", ["x,y"]),
    ("{[},]}", ["}"]),
    ("{a\\,b,c}.py", ["c.py"]),
    ("**/a.py", ["a.py"]),
    ("**.py", ["a.py", "b.py", "c.py", "test_a.py"]),
    ("a**", ["a*b", "a-b", "a.b.c", "a.py", "a\\]", "a\\b", "a]", "aaab", "ab.txt", "abab", "a{b"]),
    ("*", NAMES),
    ("**", NAMES),
    ("[[]", []),
    ("\\[", []),
    ("[c-a].py", "invalid range; 'c' > 'a'"),
    ("[", "unclosed character class; missing ']'"),
    ("{a", "unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"),
    ("{a,{b,c}}", "nested alternate groups are not allowed"),
    ("*\\", "dangling '\\'"),
    ("\\", "dangling '\\'"),
    ("[!]", "unclosed character class; missing ']'"),
    ("[]", "unclosed character class; missing ']'"),
    ("[a--]", "invalid range; 'a' > '-'"),
    ("{a,b", "unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"),
    ("a{b", "unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"),
    ("[z-a]", "invalid range; 'z' > 'a'"),
]


@pytest.mark.parametrize(("glob", "expected"), RIPGREP, ids=[g for g, _ in RIPGREP])
def test_globs_select_and_refuse_as_ripgrep_does(glob: str, expected: list[str] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(UsageError) as refused:
            compile_glob(glob)
        assert refused.value.field == "glob"
        assert expected.split(" (maybe")[0] in refused.value.message
        assert refused.value.message.startswith(f"invalid glob {glob!r}: ")
    else:
        compiled = compile_glob(glob)
        assert [name for name in NAMES if compiled.fullmatch(name)] == expected


@pytest.mark.parametrize("glob", ["}", "a}", "{a,b}}", "*.py}"])
def test_a_brace_never_opened_is_refused(glob: str) -> None:
    """ripgrep 13 takes `a}` as a glob that matches nothing at all, not even a file `a}`;
    globset names the fault (UnopenedAlternates), and so do we: a typo is said, not silent."""
    with pytest.raises(UsageError, match="unopened alternate group"):
        compile_glob(glob)
    assert compile_glob("a\\}").fullmatch("a}")
    assert compile_glob("a[}]").fullmatch("a}")


def test_negation_escapes_and_alternation_through_the_filter() -> None:
    """`!GLOB` excludes (a leading `\\!` is a literal `!`), the last matching glob wins."""
    keeps = file_filter(["*.py", "![^t]*.py", "\\!bang.txt"]).keeps
    assert [n for n in NAMES if keeps(n, None)] == ["!bang.txt", "test_a.py"]
    keeps = file_filter(["!{a,b}.py"]).keeps
    assert "a.py" not in [n for n in NAMES if keeps(n, None)]
    assert len([n for n in NAMES if keeps(n, None)]) == len(NAMES) - 2


def test_a_glob_expanding_past_the_limit_is_refused() -> None:
    compile_glob("{a,b}" * 9)  # 512 alternatives
    with pytest.raises(UsageError, match=f"expands to over {MAX_EXPANSIONS} alternatives"):
        compile_glob("{a,b}" * 10)


def test_many_stars_do_not_backtrack_exponentially() -> None:
    """A hostile name against a glob of many stars: each `*` takes the earliest place its
    fixed run matches and never gives it back, so this answers at once (a plain `.*` per
    star would try about n**25 ways before saying no)."""
    glob = "*a" * 25 + "*b"
    assert not compile_glob(glob).fullmatch("a" * 5000)
    assert compile_glob(glob).fullmatch("a" * 5000 + "b")


# Where ripgrep's rules and fnmatch's agree (`*`, `?`, literals, `[...]` sets of letters):
# the same answer on every name.
_GLOBS = st.text(alphabet="ab.*?", max_size=8) | st.lists(
    st.sampled_from(["a", "b", "*", "?", "[ab]", "[!a]", "[a-b]", "."]), max_size=8
).map("".join)


@given(glob=_GLOBS, name=st.text(alphabet="ab.", max_size=10))
def test_globs_agree_with_fnmatch_where_the_rules_agree(glob: str, name: str) -> None:
    assert bool(compile_glob(glob).fullmatch(name)) == fnmatch.fnmatchcase(name, glob)


@given(
    head=st.sampled_from(["", "a", "*", "?b"]),
    choices=st.lists(st.sampled_from(["", "a", "b*", "*a", "?", "[ab]"]), min_size=1, max_size=4),
    tail=st.sampled_from(["", "b", "*", "a?"]),
    name=st.text(alphabet="ab", max_size=8),
)
def test_alternatives_match_as_their_expansions(
    head: str, choices: list[str], tail: str, name: str
) -> None:
    """`H{x,y}T` matches what `HxT` or `HyT` matches, stars inside the group included."""
    glob = f"{head}{{{','.join(choices)}}}{tail}"
    expected = any(fnmatch.fnmatchcase(name, f"{head}{c}{tail}") for c in choices)
    assert bool(compile_glob(glob).fullmatch(name)) == expected
