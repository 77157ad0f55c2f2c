"""Between gists and files: which listed files are read at all (-g globs, --language).

Decided from the listing alone, so a file filtered out is never requested. The rules are
ripgrep's for `-g` (docs/cli.md): globs match the file name (`*`, `?`, `[...]`, `{a,b}`),
case-sensitively; `!GLOB` excludes; when several match, the one given last wins; when
none matches, a file is kept only if every glob given is an exclusion. `--language` keeps
the files whose listed `language` (GitHub's detection) is one of the names given, ignoring
case; a file without a language is then left out.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gistscan.errors import UsageError

MAX_FILTERS = 32  # globs, and languages, in one search
MAX_FILTER_LENGTH = 100  # characters of one glob or language name
MAX_EXPANSIONS = 1000  # alternatives `{a,b}` groups may multiply into, per glob

_BRACES = re.compile(r"\{([^{}]*,[^{}]*)\}")  # an innermost group with a comma


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
        body = glob[1:] if excludes else glob
        alternatives = _expand(body, glob)
        source = "|".join(fnmatch.translate(a) for a in alternatives)
        compiled.append((re.compile(source, re.DOTALL), excludes))
    return FileFilter(tuple(compiled), frozenset(lang.strip().casefold() for lang in languages))


def _expand(glob: str, given: str) -> list[str]:
    """`a.{py,js}` -> [`a.py`, `a.js`], innermost groups first; a group without a comma is
    literal. Raises `UsageError` past MAX_EXPANSIONS alternatives."""
    done: list[str] = []
    todo = [glob]
    while todo:
        item = todo.pop()
        group = _BRACES.search(item)
        if group is None:
            done.append(item)
        else:
            head, tail = item[: group.start()], item[group.end() :]
            todo += [head + part + tail for part in group.group(1).split(",")]
        if len(done) + len(todo) > MAX_EXPANSIONS:
            raise UsageError(
                f"the glob {given!r} expands to over {MAX_EXPANSIONS} alternatives", field="glob"
            )
    return done
