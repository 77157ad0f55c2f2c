"""The command line: `gistscan search USER PATTERN`, printed as grep prints; `gistscan serve`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from gistscan import __version__

if TYPE_CHECKING:
    from gistscan.config import Query, Settings
    from gistscan.records import Context, Error, Match, Summary

EXIT_MATCH, EXIT_NO_MATCH, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
# ripgrep's colours: file names magenta, line numbers green, matches bold red.
PATH, NUMBER, HIGHLIGHT, RESET, CLEAR_LINE = (
    "\x1b[35m",
    "\x1b[32m",
    "\x1b[1;31m",
    "\x1b[0m",
    "\r\x1b[K",
)
DEFAULT_API_URL = "https://api.github.com"  # config.DEFAULT_API_URL (kept light: --help is fast)
TOKEN_HINT = (
    "set GITHUB_TOKEN to a GitHub token (https://github.com/settings/tokens, no scope needed):"
    " 5,000 requests an hour instead of 60"
)

SEARCH_ENV = """\
environment (flags win; docs/settings.md lists every variable):
  GITHUB_TOKEN              a GitHub token: 5,000 API requests an hour instead of 60
                            (https://github.com/settings/tokens, no scope needed)
  GISTSCAN_API_URL          GitHub API root (--api-url)
  GISTSCAN_CONCURRENCY, GISTSCAN_CHUNK_SIZE, GISTSCAN_MAX_CARRY, GISTSCAN_REGEX_TIMEOUT,
  GISTSCAN_RETRIES          as the flags of the same names
  GISTSCAN_REQUEST_TIMEOUT, GISTSCAN_BACKOFF, GISTSCAN_PER_PAGE, GISTSCAN_USER_AGENT
  NO_COLOR                  set (not empty): no colour with --color auto
"""
SERVE_ENV = """\
environment (docs/settings.md lists every variable with its default):
  GITHUB_TOKEN              a GitHub token: 5,000 API requests an hour instead of 60
                            (https://github.com/settings/tokens, no scope needed)
  GISTSCAN_API_URL          GitHub API root
  HOST, PORT                where to listen (--host, --port)
  GISTSCAN_MAX_CONCURRENT_SEARCHES, GISTSCAN_MAX_SEARCHES_PER_CLIENT, GISTSCAN_SEARCH_DEADLINE,
  GISTSCAN_STALL_TIMEOUT, GISTSCAN_MAX_PATTERN_LENGTH, GISTSCAN_CACHE_*, ...   the limits
  GISTSCAN_TRUSTED_PROXIES  reverse proxies whose X-Forwarded-For names the client
  GISTSCAN_SHUTDOWN_TIMEOUT seconds from SIGTERM to exit (default: search deadline + 5)
  GISTSCAN_LOG_FORMAT       json (default) or text (--log-format)
  GISTSCAN_CONCURRENCY, GISTSCAN_CHUNK_SIZE, GISTSCAN_REGEX_TIMEOUT, ...   each search's
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks: dict[str, str] = {}  # the arguments after `--`, by their mark (_parse)

    def error(self, message: str) -> NoReturn:
        for mark, value in self.marks.items():
            message = message.replace(mark, value)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _int_in(low: int, high: int | None = None) -> type[int]:
    """A whole number from `low` to `high` (None: no upper bound), said so when it is not."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if high is None and value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more: {text!r}")
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}: {text!r}")
        return value

    return parse  # type: ignore[return-value]


# The bounds of the settings' flags are Settings' own (config.MAX_*, named in its message);
# these are the options whose bounds are the command line's.
_integer = _int_in(-sys.maxsize)
_lines = _int_in(0, 1000)  # config.MAX_CONTEXT


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _port(text: str) -> int:
    if not text.isdecimal() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number from 0 to 65535: {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gistscan",
        description="Search every public gist of a GitHub user for a regular expression.",
    )
    parser.add_argument("--version", action="version", version=f"gistscan {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    raw = argparse.RawDescriptionHelpFormatter
    s = commands.add_parser(
        "search",
        help="search a user's gists and print the matching lines",
        formatter_class=raw,
        description="Print the lines of USER's public gists that match PATTERN, as grep does:"
        " GIST_ID/FILENAME:LINE_NUMBER:LINE.\nOptions may come before, between or after USER"
        " and PATTERN; after --, only USER and PATTERN.\nExit status: 0 a match, 1 none, 2 an"
        " error. docs/cli.md has the details.",
        epilog=SEARCH_ENV,
    )
    s.add_argument("user", metavar="USER", help="GitHub login whose public gists to search")
    s.add_argument(
        "pattern", metavar="PATTERN", nargs="?",
        help="regular expression (Python `regex` syntax); or give -e",
    )  # fmt: skip
    add = s.add_argument_group("matching").add_argument
    add(
        "-e", "--regexp", action="append", metavar="PATTERN", default=[],
        help="a pattern (repeatable: lines matching any); the way to give one starting with -",
    )  # fmt: skip
    add("-i", "--ignore-case", action="store_true", help="case-insensitive matching")
    add("-F", "--fixed-strings", action="store_true", help="patterns are literal strings")
    add("-w", "--word-regexp", action="store_true", help="only matches that are whole words")
    add("-v", "--invert-match", action="store_true", help=argparse.SUPPRESS)  # refused: _query
    add = s.add_argument_group("what to read (decided before any download)").add_argument
    add(
        "-g", "--glob", action="append", metavar="GLOB", default=[],
        help="only file names matching GLOB; !GLOB leaves them out (repeatable, ripgrep's rules)",
    )  # fmt: skip
    add(
        "--language", action="append", metavar="NAME", default=[],
        help="only files GitHub lists in this language (repeatable, any case)",
    )  # fmt: skip
    add("--since", metavar="DATE", help="only gists updated since DATE (ISO 8601, UTC default)")
    add = s.add_argument_group("output").add_argument
    add(
        "-m", "--max-count", type=_int_in(0), metavar="N",
        help="at most N matching lines per file; the file's download stops there"
        " (0: read nothing, exit 1, as grep)",
    )  # fmt: skip
    add(
        "--max-total", type=_int_in(1), metavar="N",
        help="stop the search after N matches in all",
    )  # fmt: skip
    add("-A", "--after-context", type=_lines, metavar="N", help="N lines after each match")
    add("-B", "--before-context", type=_lines, metavar="N", help="N lines before each match")
    add("-C", "--context", type=_lines, metavar="N", help="N lines before and after")
    add("--column", action="store_true", help="one line per match, with its column")
    add("-o", "--only-matching", action="store_true", help="print each match, not its line")
    add(
        "-l", "--files-with-matches", action="store_true",
        help="print GIST_ID/FILENAME once per file with a match (reading stops there)",
    )  # fmt: skip
    add("-c", "--count", action="store_true", help="print GIST_ID/FILENAME:N matching lines")
    add("-q", "--quiet", action="store_true", help="print nothing; stop at the first match")
    add("-n", "--line-number", action="store_true", help="accepted; line numbers are always on")
    add("--json", action="store_true", help="print NDJSON records (docs/records.md), nothing else")
    add(
        "--color", "--colour", choices=("auto", "always", "never"), default="auto",
        help="highlight (default auto: on a terminal, unless NO_COLOR is set)",
    )  # fmt: skip
    add = s.add_argument_group("settings").add_argument
    add(
        "--api-url", metavar="URL",
        help=f"GitHub API root (default: $GISTSCAN_API_URL or {DEFAULT_API_URL})",
    )  # fmt: skip
    add("--concurrency", type=_integer, metavar="N", help="downloads in flight, 1-100 (default 8)")
    add(
        "--chunk-size", type=_integer, metavar="BYTES",
        help="read size, 1 to 16777216 (default 65536)",
    )  # fmt: skip
    add(
        "--timeout", type=_positive_float, metavar="SECONDS",
        help="regex time budget per file, CPU seconds (default 2)",
    )  # fmt: skip
    add(
        "--max-carry", type=_integer, metavar="CHARS",
        help="most text kept to decide a match across chunks, 1 to 67108864 (default 1048576)",
    )  # fmt: skip
    add(
        "--retries", type=_integer, metavar="N",
        help="retries of a failed request, 0-10 (default 3)",
    )  # fmt: skip
    add(
        "--deadline", type=_positive_float, metavar="SECONDS",
        help="stop the whole search after SECONDS (default: none)",
    )  # fmt: skip
    v = commands.add_parser(
        "serve",
        help="run the HTTP server",
        formatter_class=raw,
        description="Run the HTTP server (docs/http-api.md). SIGTERM or Ctrl-C drains it"
        " (running searches end with their summary), then it exits 0.",
        epilog=SERVE_ENV,
    )
    v.add_argument("--host", help="address to bind (default: $HOST, else 127.0.0.1)")
    v.add_argument(
        "--port",
        type=_int_in(0, 65535),
        help="port, 0-65535; 0 picks a free one, logged (default: $PORT, else 8080)",
    )
    v.add_argument(
        "--log-format",
        choices=("json", "text"),
        help="log lines on stderr: one JSON object each, or plain text"
        " (default: $GISTSCAN_LOG_FORMAT, else json)",
    )
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    """The command line's options; options may come before, between or after USER and
    PATTERN (`search octo -i TODO`), as grep's do; after `--`, only USER and PATTERN."""
    parser = build_parser()
    if argv[:1] != ["search"]:
        return parser.parse_args(argv)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    search = commands.choices["search"]
    rest = argv[1:]
    if "--" in rest:
        # Python 3.11's intermixed parsing drops `--` in its first pass, and its second then
        # takes `-Jerry-` after it for an option: what follows `--` is parsed as marks that
        # cannot look like one (a NUL is in no real argument), then put back.
        at = rest.index("--") + 1
        search.marks = {f"\0{i}": value for i, value in enumerate(rest[at:])}
        rest = rest[:at] + list(search.marks)
    args: argparse.Namespace = search.parse_intermixed_args(rest)
    args.command = "search"
    args.user = search.marks.get(args.user, args.user)
    args.pattern = search.marks.get(args.pattern, args.pattern)
    return args


def _regexp_values(argv: Sequence[str]) -> list[str]:
    """`-e -x` as `--regexp=-x`: argparse would take `-x` for an option, grep takes a pattern."""
    out = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            out += [arg, *args]
            break
        if arg in ("-e", "--regexp"):
            value = next(args, None)
            out.append(arg if value is None else f"--regexp={value}")
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (docs/cli.md). Ctrl-C: 130, no traceback.

    Called without `argv` (as the program), an interrupt ends the process at once with
    `exit_interrupted`."""
    try:
        status = _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # before the search started, or between its end and here
        print("gistscan: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    if status == EXIT_INTERRUPTED and argv is None:
        exit_interrupted()
    return status


def exit_interrupted() -> NoReturn:
    """End the process with status 130 now, its output flushed.

    Not through the interpreter's own exit: on CPython 3.11, a SIGINT that lands while an
    `exec()` runs (a dataclass or attrs class being built by an import at start-up) marks
    the KeyboardInterrupt as unhandled even once it is caught, and the exit then kills the
    process with SIGINT: status -2, not 130. Nothing is left to clean up: an interrupted
    search was closed before this, and its worker threads need not finish their chunk.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(EXIT_INTERRUPTED)


def _main(argv: Sequence[str]) -> int:
    # Never a UnicodeEncodeError (a traceback, exit 1: "no match") on a stream that cannot
    # encode a gist's text or a user's input, e.g. cp1252 on Windows: such characters print
    # as "?", on stdout and stderr alike (Python's own stderr default would print "\u2713").
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    args = _parse(_regexp_values(argv))
    from gistscan.errors import UsageError  # the heavy imports, once --help is out of the way

    if args.command == "serve":
        return _serve(args)
    try:
        query = _query(args)
        query.validate()  # every input checked before any request
        settings = _settings(args)
    except UsageError as exc:
        print(f"gistscan: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    if args.max_count == 0:
        return EXIT_NO_MATCH  # grep's and ripgrep's -m 0: read nothing, print nothing
    printer = _Printer(args, query, settings)
    try:
        return asyncio.run(printer.run())
    except KeyboardInterrupt:
        printer.interrupted()
        return EXIT_INTERRUPTED


def _serve(args: argparse.Namespace) -> int:
    """`serve`: settings from the environment, the address from the flags, then $HOST and
    $PORT; a bad one is one line and exit 2 (so is an address that cannot be listened on)."""
    from gistscan import server
    from gistscan.errors import UsageError

    try:
        config = server.ServerConfig.from_env(os.environ)
        host, port = server.listen_address(args.host, args.port, os.environ)
    except UsageError as exc:
        print(f"gistscan: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    if args.log_format:
        config = dataclasses.replace(config, log_format=args.log_format)
    return server.run(host=host, port=port, config=config)


def _query(args: argparse.Namespace) -> Query:
    """The search the options ask for; raises `UsageError` (one line, exit 2)."""
    from gistscan.config import Query, normalize_since
    from gistscan.errors import UsageError

    patterns = [*([args.pattern] if args.pattern is not None else []), *args.regexp]
    if args.pattern is not None and args.regexp:
        raise UsageError("give PATTERN or -e PATTERN, not both")
    if not patterns:
        raise UsageError("a PATTERN (or -e PATTERN) is required")
    if args.invert_match:
        raise UsageError("-v (--invert-match) is not supported: gistscan reports where matches are")
    if args.json and (args.files_with_matches or args.count):
        raise UsageError("--json prints records; it cannot be used with -l or -c")
    if args.files_with_matches and args.count:
        raise UsageError("-l and -c cannot be used together")
    pattern, fixed = patterns[0], args.fixed_strings
    if len(patterns) > 1:  # any of them: one alternation, each escaped first under -F
        import regex

        pattern = "|".join(f"(?:{regex.escape(p) if fixed else p})" for p in patterns)
        fixed = False
    lines_printed = not (args.files_with_matches or args.count or args.quiet)
    before = after = 0
    if lines_printed and not args.only_matching:
        before = args.before_context if args.before_context is not None else args.context or 0
        after = args.after_context if args.after_context is not None else args.context or 0
    return Query(
        username=args.user,
        pattern=pattern,
        ignore_case=args.ignore_case,
        fixed_strings=fixed,
        word_regexp=args.word_regexp,
        max_matches=1 if args.quiet else args.max_total,
        max_count=args.max_count or None,  # -m 0 stops before the search (_main)
        files_with_matches=args.files_with_matches,
        before_context=before,
        after_context=after,
        globs=tuple(args.glob),
        languages=tuple(args.language),
        since=None if args.since is None else normalize_since(args.since),
    )


def _settings(args: argparse.Namespace) -> Settings:
    from gistscan.config import Settings
    from gistscan.errors import UsageError

    flags = {
        "api_url": args.api_url,
        "concurrency": args.concurrency,
        "chunk_size": args.chunk_size,
        "regex_timeout": args.timeout,
        "max_carry": args.max_carry,
        "retries": args.retries,
        "deadline": args.deadline,
    }
    given = {name: value for name, value in flags.items() if value is not None}
    # The GISTSCAN_* variables apply as they do to `serve`; a flag given wins.
    try:
        return Settings.from_env(os.environ, **given)
    except UsageError as exc:
        if exc.field in given:  # name the flag the user typed, not the field
            flag = {"regex_timeout": "timeout"}.get(exc.field, exc.field).replace("_", "-")
            said = exc.message.removeprefix(f"{exc.field} ")  # "concurrency must be ..."
            said = f" {said}" if said != exc.message else f": {said}"
            raise UsageError(f"--{flag}{said}", field=exc.field) from None
        raise


@dataclass
class _Line:
    """A matching line being gathered: its first match's record, and where each match of
    the line falls in that record's `line` (start, end), for highlighting."""

    first: Match
    spans: list[tuple[int, int]] = field(default_factory=list)


class _OutputFailed(Exception):
    """Stdout refused a write (a closed pipe, a full disk): the search stops."""


class _Printer:
    """Writes a search's events as they come: lines as grep prints them, or NDJSON; errors,
    hints and a summary line on stderr, and a progress line when stderr is a terminal."""

    def __init__(self, args: argparse.Namespace, query: Query, settings: Settings) -> None:
        from gistscan.pipeline import Progress

        self.args = args
        self.query = query
        self.settings = settings
        self.out = sys.stdout
        self.err: TextIO = sys.stderr
        self.color = use_color(args.color, self.out, os.environ)
        self.live = self.err.isatty() and not args.quiet
        self.progress = Progress()
        self.started = time.monotonic()
        self.context = bool(query.before_context or query.after_context)
        self.matches = self.errors = 0
        self._shown = False
        self._pending: dict[tuple[str, str], _Line] = {}  # matching lines being gathered
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}  # -c: (lines, last line)
        self._last: tuple[str, str, int] | None = None  # the last line printed (for --)
        self._prefixes: dict[tuple[str, str], str] = {}  # files being printed: their prefix
        self._hinted: set[str] = set()
        self._summary_written = False
        self._text: list[str] = []  # stdout's next write
        self._bytes: list[bytes] = []  # or, with --json, its next write in bytes
        self._flush_soon = False  # a flush of stdout is scheduled
        self._write_failed: OSError | None = None  # stdout refused a write

    async def run(self) -> int:
        from gistscan.files import FileDone
        from gistscan.lines import LineDone
        from gistscan.pipeline import search_events
        from gistscan.records import Context, Error, Match, Summary

        ticker = asyncio.create_task(self._tick()) if self.live else None
        try:
            events = search_events(self.query, self.settings, progress=self.progress)
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, Match):
                        self.matches += 1
                        self.match(event)
                    elif isinstance(event, LineDone):
                        self.line_done((event.file.gist_id, event.file.filename))
                    elif isinstance(event, Context):
                        self.context_line(event)
                    elif isinstance(event, FileDone):
                        self.file_done((event.file.gist_id, event.file.filename))
                    elif isinstance(event, Error):
                        self.errors += 1
                        self.error(event)
                    elif isinstance(event, Summary):
                        self.summary(event)
                    if self._write_failed:
                        raise _OutputFailed
            self._flush_stdout()
            if self._write_failed:
                raise _OutputFailed
        except _OutputFailed:
            # Nothing more can be written: stop the search, and keep the interpreter's exit
            # from trying to flush stdout again.
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            if isinstance(self._write_failed, BrokenPipeError):
                # The reader went away (`| head`): stop quietly, as grep and ripgrep do.
                return EXIT_MATCH if self.matches else EXIT_NO_MATCH
            # A full disk, a closed or unwritable stdout: grep's "write error", status 2.
            reason = self._write_failed.strerror if self._write_failed else None
            print(f"gistscan: write error: {reason or 'stdout'}", file=self.err, flush=True)
            return EXIT_ERROR
        finally:
            if ticker:
                ticker.cancel()
            self.clear_progress()
        if self.matches and (self.args.quiet or not self.errors):
            return EXIT_MATCH  # grep -q: a match wins over an error
        return EXIT_ERROR if self.errors else EXIT_NO_MATCH

    # -- stdout ---------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        self._text.append(text)
        self._flush_later()

    def _record(self, record: Match | Context | Error | Summary) -> None:
        from gistscan.records import encode

        self._bytes.append(encode(record))  # UTF-8, whatever stdout's encoding
        self._flush_later()

    def _flush_later(self) -> None:
        """Flush stdout once the search has nothing more ready: each line goes out as soon
        as it is found, yet lines found together go out in one write, not one each."""
        if self._flush_soon:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside the search (Ctrl-C's summary): now
            self._flush_stdout()
            return
        self._flush_soon = True
        loop.call_soon(self._flush_stdout)

    def _flush_stdout(self) -> None:
        self._flush_soon = False
        if self._write_failed:  # nothing more goes out
            self._text, self._bytes = [], []
        if not (self._text or self._bytes):
            return
        self.clear_progress()
        text, self._text, data, self._bytes = "".join(self._text), [], b"".join(self._bytes), []
        try:
            if text:
                self.out.write(text)
                self.out.flush()
            if data:  # --json, which writes no text
                self.out.buffer.write(data)
                self.out.buffer.flush()
        except OSError as exc:  # raised in run(), which stops the search
            self._write_failed = exc

    def _prefix(self, gist_id: str, filename: str) -> str:
        key = (gist_id, filename)
        prefix = self._prefixes.get(key)
        if prefix is None:
            name = f"{_escape(gist_id)}/{_escape(filename)}"
            prefix = self._prefixes[key] = f"{PATH}{name}{RESET}" if self.color else name
        return prefix

    def _number(self, n: int) -> str:
        return f"{NUMBER}{n}{RESET}" if self.color else str(n)

    def _separate(self, gist_id: str, filename: str, n: int) -> None:
        """`--` between groups of context, as grep prints it: before a line that does not
        follow the last one printed (another file, or a gap)."""
        if self.context and self._last is not None and self._last != (gist_id, filename, n - 1):
            self._write("--\n")
        self._last = (gist_id, filename, n)

    def match(self, m: Match) -> None:
        args = self.args
        if args.quiet:
            return
        if args.json:
            return self._record(m)
        key = (m.gist_id, m.filename)
        if args.files_with_matches:
            return self._write(f"{self._prefix(*key)}\n")
        if args.count:
            count, last = self._counts.get(key, (0, 0))
            if m.line_number != last:
                self._counts[key] = (count + 1, m.line_number)
            return
        if args.only_matching or args.column:
            self._separate(*key, m.line_number)
            where = f"{self._number(m.line_number)}:"
            if args.column:
                where += f"{self._number(m.column)}:"
            if args.only_matching:
                text = _escape(m.match)
                text = f"{HIGHLIGHT}{text}{RESET}" if self.color else text
            else:
                text = self._highlight(m.line, [_span(m)])
            return self._write(f"{self._prefix(*key)}:{where}{text}\n")
        line = self._pending.get(key)
        if line is not None and line.first.line_number != m.line_number:
            self._flush(key)  # a match on a later line: the pending one is complete
            line = None
        if line is None:
            line = self._pending[key] = _Line(m)
        if self.color and len(line.spans) < len(line.first.line):  # more could never show
            start = _span(line.first)[0] - (line.first.column - 1) + (m.column - 1)
            line.spans.append((start, start + len(m.match.split("\n", 1)[0])))

    def line_done(self, key: tuple[str, str]) -> None:
        self._flush(key)

    def _flush(self, key: tuple[str, str]) -> None:
        """Print the file's matching line being gathered, if any."""
        line = self._pending.pop(key, None)
        if line is not None:
            first = line.first
            self._separate(*key, first.line_number)
            text = self._highlight(first.line, line.spans)
            self._write(f"{self._prefix(*key)}:{self._number(first.line_number)}:{text}\n")

    def context_line(self, c: Context) -> None:
        if self.args.json:
            return self._record(c)
        self._flush((c.gist_id, c.filename))  # a context line follows a complete line
        self._separate(c.gist_id, c.filename, c.line_number)
        prefix = self._prefix(c.gist_id, c.filename)
        self._write(f"{prefix}-{self._number(c.line_number)}-{_escape(c.line)}\n")

    def file_done(self, key: tuple[str, str]) -> None:
        self._flush(key)  # its last line, or one cut short by the file's error
        count, _ = self._counts.pop(key, (0, 0))
        if count and not self.args.quiet:
            self._write(f"{self._prefix(*key)}:{count}\n")
        self._prefixes.pop(key, None)

    def _highlight(self, line: str, spans: list[tuple[int, int]]) -> str:
        """`line`, escaped, with the parts `spans` cover marked when colouring."""
        if not self.color:
            return _escape(line)
        out, at = [], 0
        for start, end in sorted(spans):
            start, end = max(start, at), min(end, len(line))
            if start >= end:
                continue
            out += [_escape(line[at:start]), HIGHLIGHT, _escape(line[start:end]), RESET]
            at = end
        out.append(_escape(line[at:]))
        return "".join(out)

    # -- stderr ---------------------------------------------------------------------------

    def error(self, e: Error) -> None:
        if self.args.json:
            self._record(e)
        else:
            self.clear_progress()
            self._flush_stdout()  # what came before it, first
            print(_escape(_describe(e)), file=self.err, flush=True)
        self._hint(e)

    def _hint(self, e: Error) -> None:
        """One short line on what to do, for the faults a setting can fix (once each)."""
        hint = None
        # Only GitHub's primary API limit: a token lifts it from 60 to 5,000 requests an hour.
        # A secondary limit or the raw host's 429 would not care.
        if e.code == "rate_limited" and e.primary_limit and not self.settings.token:
            hint = TOKEN_HINT
        elif (
            e.code == "upstream_error"
            and e.gist_id is None
            and self.progress.gists == 0
            and "answered" not in e.message  # GitHub was reached: a status, not the network
        ):
            url = f"{self.settings.api_url}/users/{self.query.username}/gists"
            if "answer within" in e.message:  # connected, or trying to, but no answer came
                hint = (
                    f"GitHub did not answer in time at {url}; check the network or proxy"
                    " (HTTPS_PROXY), or allow more time with GISTSCAN_REQUEST_TIMEOUT"
                )
            else:
                hint = (
                    f"GitHub could not be reached at {url}; check the network, DNS or proxy"
                    " (HTTPS_PROXY), or set another API root with --api-url or GISTSCAN_API_URL"
                )
        if hint is not None and e.code not in self._hinted:
            self._hinted.add(e.code)
            self.clear_progress()
            print(f"gistscan: hint: {hint}", file=self.err, flush=True)

    def summary(self, s: Summary) -> None:
        for key in list(self._pending):  # a search stopped mid-line (--max-total)
            self._flush(key)
        self._summary_written = True
        if self.args.json and not self.args.quiet:
            self._record(s)
        elif not self.args.quiet:
            self.clear_progress()
            self._flush_stdout()  # every line before the summary
            print(_escape(_describe(s, self.query.max_matches)), file=self.err, flush=True)

    def interrupted(self) -> None:
        """Ctrl-C: the summary so far (complete: false) still ends --json output."""
        self.clear_progress()
        self._flush_stdout()  # the lines found before the interrupt
        if self.args.json and not self.args.quiet and not self._summary_written:
            summary = self.progress.summary(self.query, complete=False, started=self.started)
            with contextlib.suppress(OSError):
                self._record(summary)
        print("gistscan: interrupted", file=self.err, flush=True)

    async def _tick(self) -> None:
        while True:
            p = self.progress
            self.err.write(
                f"{CLEAR_LINE}gistscan: {p.gists} gists, {p.files} files"
                f" ({p.skipped} skipped), {_size(p.bytes)}, {p.matches} matches"
            )
            self.err.flush()
            self._shown = True
            await asyncio.sleep(0.2)

    def clear_progress(self) -> None:
        if self._shown:
            self.err.write(CLEAR_LINE)
            self.err.flush()
            self._shown = False


def use_color(choice: str, out: TextIO, environ: Mapping[str, str]) -> bool:
    """--color: `always`, `never`, or `auto`: on a terminal, unless NO_COLOR is set to a
    non-empty value (https://no-color.org) or TERM is `dumb`."""
    if choice != "auto":
        return choice == "always"
    return not environ.get("NO_COLOR") and environ.get("TERM") != "dumb" and out.isatty()


def _span(m: Match) -> tuple[int, int]:
    """Where the match's first line of text falls in `m.line` (cut around the match when the
    line is long: it then starts at most 100 characters before the match)."""
    part = m.match.split("\n", 1)[0]
    for at in (m.column - 1, min(m.column - 1, 100)):
        if m.line[at : at + len(part)] == part:
            return at, at + len(part)
    return 0, 0


# Control characters from a gist never reach a terminal raw: escape sequences could
# clear a screen or forge a line. Tabs are left alone (indentation). Nor do the characters
# that move text without being seen: Unicode's line and paragraph separators (a new line
# to some terminals) and its bidirectional controls (Unicode's Bidi_Control property),
# which can show a name or a line in another order than its bytes ("Trojan Source").
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x09}
_ESCAPES |= {0x0A: "\\n", 0x0D: "\\r"}
_UNSEEN = [0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES |= {c: f"\\u{c:04x}" for c in _UNSEEN}


_CONTROL = re.compile("[" + "".join(re.escape(chr(c)) for c in _ESCAPES) + "]")


def _escape(text: str) -> str:
    """`text` with control characters shown as ripgrep shows them (`\\x1b`, `\\n`, `\\r`),
    and Unicode's invisible line breaks and direction controls as `\\u2028`, `\\u202e`."""
    return text.translate(_ESCAPES) if _CONTROL.search(text) else text


def _describe(record: Error | Summary, max_total: int | None = None) -> str:
    from gistscan.records import Error

    if isinstance(record, Error):
        where = f"{record.gist_id}/{record.filename}: " if record.gist_id else ""
        if record.gist_id and record.filename is None:
            where = f"{record.gist_id}: "
        return f"gistscan: {where}{record.code}: {record.message}"
    s = record
    found = _n(s.matches, "match")
    stopped = s.matches == max_total and not s.complete and not s.errors
    if stopped:
        found += f" (stopped at --max-total {max_total})"
    details = [f"{s.skipped} binary skipped"]
    if s.filtered:
        details.append(f"{s.filtered} filtered")
    details += [_size(s.bytes), _n(s.errors, "error")]
    if not s.complete and not stopped:
        details.append("incomplete")
    searched = f"in {_n(s.files, 'file')} of" if not stopped else "in"
    return (
        f"gistscan: {found} {searched} {_n(s.gists, 'gist')} of {s.username}"
        f" ({', '.join(details)}) in {s.elapsed_ms / 1000:.1f} s"
    )


def _n(count: int, noun: str) -> str:
    return (
        f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun.endswith('ch') else 's'}"
    )


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("KB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
