"""Between gists and files: which listed files are read at all (-g globs, --language).

Decided from the listing alone, so a file filtered out is never requested. The rules are
ripgrep's for `-g` (docs/cli.md): globs match the whole file name, case-sensitively; `*`
any characters, `?` one, `[abc]`/`[a-z]` a set, `[!a]`/`[^a]` its complement, `{a,b}`
alternatives (not nested), `\\` makes the next character literal. A bad glob (`[`, `{a`,
`a}`, `[c-a]`, a trailing `\\`) is refused, as ripgrep refuses it. `!GLOB` excludes; when
several match, the one given last wins; when none matches, a file is kept only if every
glob given is an exclusion. `--language` keeps the files whose listed `language` (GitHub's
detection) is one of the names given, ignoring case; a file without a language is then
left out.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gistscan.errors import UsageError

MAX_FILTERS = 32  # globs, and languages, in one search
MAX_FILTER_LENGTH = 100  # characters of one glob or language name
MAX_EXPANSIONS = 1000  # alternatives `{a,b}` groups may multiply into, per glob

_STAR = "*"  # a token: any characters; every other token is a regex matching one character


@dataclass(frozen=True, slots=True)
class FileFilter:
    """The compiled filters of one search; `keeps(name, language)` says whether to read a file."""

    globs: tuple[tuple[re.Pattern[str], bool], ...] = ()  # (compiled glob, excludes) in order
    languages: frozenset[str] = frozenset()  # casefolded

    @property
    def active(self) -> bool:
        return bool(self.globs or self.languages)

    def keeps(self, filename: str, language: str | None) -> bool:
        """Whether the file passes every filter (glob rules, then the language)."""
        if self.globs:
            verdict = all(excludes for _, excludes in self.globs)
            for compiled, excludes in reversed(self.globs):
                if compiled.fullmatch(filename):
                    verdict = not excludes
                    break
            if not verdict:
                return False
        if self.languages:
            return language is not None and language.casefold() in self.languages
        return True


def file_filter(globs: Sequence[str] = (), languages: Sequence[str] = ()) -> FileFilter:
    """Compile the filters, or raise `UsageError` naming the bad one (field `glob`/`language`)."""
    for name, values in (("glob", globs), ("language", languages)):
        if len(values) > MAX_FILTERS:
            raise UsageError(f"at most {MAX_FILTERS} {name}s, not {len(values)}", field=name)
        for value in values:
            if not isinstance(value, str) or not value.strip("! \t"):
                raise UsageError(f"an empty {name}", field=name)
            if len(value) > MAX_FILTER_LENGTH:
                raise UsageError(
                    f"a {name} is at most {MAX_FILTER_LENGTH} characters, not {len(value)}",
                    field=name,
                )
    compiled = []
    for glob in globs:
        excludes = glob.startswith("!")
        compiled.append((compile_glob(glob[1:] if excludes else glob), excludes))
    return FileFilter(tuple(compiled), frozenset(lang.strip().casefold() for lang in languages))


def compile_glob(glob: str) -> re.Pattern[str]:
    """The regular expression `fullmatch`ing the file names `glob` matches (ripgrep's rules,
    above); raises `UsageError` (field `glob`) for a glob ripgrep refuses.

    Each `{a,b}` group is expanded into whole alternatives (at most MAX_EXPANSIONS), and each
    `*` becomes an atomic lazy `(?>.*?FIXED)`: the text up to the earliest place the fixed
    part after the star matches is taken and never given back. That is exact (every token
    but `*` is one character wide) and keeps matching linear in the name: a glob such as
    `*a*a*a*a*b` cannot make the regex engine backtrack exponentially on a hostile name.
    """
    # A leading `**/` matches any folders, and gist file names have none.
    sequences = _parse(glob.removeprefix("**/"), glob)
    return re.compile("|".join(_regex(tokens) for tokens in sequences), re.DOTALL)


def _parse(glob: str, given: str) -> list[list[str]]:
    """The token sequences `glob` stands for, one per combination of its `{a,b}` choices."""

    def refuse(problem: str) -> UsageError:
        return UsageError(f"invalid glob {given!r}: {problem}", field="glob")

    # The glob as a sequence of parts, each a list of alternatives (a list of tokens): a part
    # outside braces has one alternative.
    parts: list[list[list[str]]] = [[[]]]
    in_group = False
    i = 0
    while i < len(glob):
        c = glob[i]
        i += 1
        here = parts[-1][-1]
        if c == "\\":
            if i == len(glob):
                raise refuse("dangling '\\' (a trailing backslash escapes nothing)")
            here.append(re.escape(glob[i]))
            i += 1
        elif c == "*":
            if not (here and here[-1] == _STAR):  # `**` is `*` in a name without folders
                here.append(_STAR)
        elif c == "?":
            here.append(".")
        elif c == "[":
            token, i = _class(glob, i, refuse)
            here.append(token)
        elif c == "{":
            if in_group:
                raise refuse("nested alternate groups are not allowed")
            in_group = True
            parts.append([[]])
        elif c == "}":
            if not in_group:
                raise refuse("unopened alternate group; missing '{' (escape '}' as '\\}')")
            in_group = False
            parts.append([[]])
        elif c == "," and in_group:
            parts[-1].append([])
        else:
            here.append(re.escape(c))
    if in_group:
        raise refuse("unclosed alternate group; missing '}' (escape '{' as '\\{')")
    count = 1
    for part in parts:
        count *= len(part)
        if count > MAX_EXPANSIONS:
            raise refuse(f"it expands to over {MAX_EXPANSIONS} alternatives")
    return [list(itertools.chain.from_iterable(choice)) for choice in itertools.product(*parts)]


def _class(glob: str, i: int, refuse: Callable[[str], UsageError]) -> tuple[str, int]:
    """The set `[...]` whose contents start at `glob[i]`: its regex and the index after it.

    As ripgrep's: `!` or `^` first negates; `]` first (after those) is literal; `-` between
    two characters is a range, elsewhere literal; a backslash is literal inside a set.
    """
    negated = i < len(glob) and glob[i] in "!^"
    i += negated
    ranges: list[tuple[str, str]] = []
    first, in_range = True, False
    while True:
        if i == len(glob):
            raise refuse("unclosed character class; missing ']'")
        c = glob[i]
        i += 1
        if c == "]" and not first:
            break
        if c == "-" and not first and not in_range:
            in_range = True
        elif in_range:
            low = ranges[-1][0]
            if c < low:
                raise refuse(f"invalid range; {low!r} > {c!r}")
            ranges[-1] = (low, c)
            in_range = False
        else:
            ranges.append((c, c))
        first = False
    if in_range:  # `[a-]`: the `-` is literal
        ranges.append(("-", "-"))
    body = "".join(
        re.escape(low) if low == high else f"{re.escape(low)}-{re.escape(high)}"
        for low, high in ranges
    )
    return f"[{'^' if negated else ''}{body}]", i


def _regex(tokens: list[str]) -> str:
    """One token sequence as a regex: each `*` atomic and lazy up to the fixed run after it
    (see `compile_glob`); the last `*`, with nothing fixed after it to find, is `.*` before
    the final fixed run (one backtracking level, anchored by `fullmatch`)."""
    runs = [""]  # the fixed runs between stars
    for token in tokens:
        if token == _STAR:
            runs.append("")
        else:
            runs[-1] += token
    out = [runs[0]]
    for run in runs[1:-1]:
        out.append(f"(?>.*?{run})")
    if len(runs) > 1:
        out.append(f".*{runs[-1]}")
    return f"(?:{''.join(out)})"
