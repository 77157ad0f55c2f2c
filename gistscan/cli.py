"""The command line: `gistscan search USER PATTERN` (grep-like) and `gistscan serve`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
from collections.abc import Sequence
from contextlib import aclosing
from typing import NoReturn, TextIO

from gistscan.config import DEFAULT_API_URL, Query, Settings
from gistscan.errors import UsageError
from gistscan.pipeline import Progress, search
from gistscan.records import Error, Match, Summary, encode

EXIT_MATCH, EXIT_NO_MATCH, EXIT_ERROR = 0, 1, 2
HIGHLIGHT, RESET, CLEAR_LINE = "\x1b[1;31m", "\x1b[0m", "\r\x1b[K"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit 2 (SPEC §4)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


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
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = commands.add_parser(
        "search",
        help="search a user's gists and print each match",
        description="Print every match of PATTERN in USER's public gists, one line each: "
        "GIST_ID/FILENAME:LINE_NUMBER:LINE. Exit status: 0 some match, 1 none, 2 an error.",
    )
    s.add_argument("user", metavar="USER", help="GitHub login whose public gists to search")
    s.add_argument("pattern", metavar="PATTERN", help="regular expression (Python `regex` syntax)")
    s.add_argument("-i", "--ignore-case", action="store_true", help="case-insensitive matching")
    s.add_argument("-F", "--fixed-strings", action="store_true", help="PATTERN is a literal string")
    s.add_argument(
        "-m", "--max-count", type=_positive_int, metavar="N", help="stop after N matches in all"
    )
    s.add_argument(
        "--json", action="store_true", help="print NDJSON records on stdout, nothing else"
    )
    s.add_argument(
        "--api-url",
        metavar="URL",
        help=f"GitHub API root (default: $GISTSCAN_API_URL or {DEFAULT_API_URL})",
    )
    s.add_argument(
        "--concurrency", type=_positive_int, metavar="N",
        help="downloads in flight (default 8)",
    )  # fmt: skip
    s.add_argument(
        "--chunk-size", type=_positive_int, metavar="BYTES",
        help="read size (default 65536)",
    )  # fmt: skip
    s.add_argument(
        "--timeout", type=_positive_float, metavar="SECONDS",
        help="regex time budget per file, CPU seconds (default 2)",
    )  # fmt: skip
    s.add_argument(
        "--max-carry", type=_positive_int, metavar="CHARS",
        help="most text kept to decide a match across chunks (default 1048576)",
    )  # fmt: skip
    s.add_argument(
        "--retries", type=int, choices=range(11), metavar="N",
        help="retries of a failed request, 0-10 (default 3)",
    )  # fmt: skip
    s.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto",
        help="highlight matches (default: auto, when stdout is a terminal)",
    )  # fmt: skip
    v = commands.add_parser(
        "serve",
        help="run the HTTP server",
        description="Run the HTTP server. SIGTERM or Ctrl-C drains it (running searches end"
        " with their summary), then it exits 0.",
    )
    v.add_argument("--host", help="address to bind (default: $HOST, else 127.0.0.1)")
    v.add_argument(
        "--port", type=_port, help="port, 0 for any free one (default: $PORT, else 8080)"
    )
    v.add_argument(
        "--log-format",
        choices=("json", "text"),
        help="log lines on stderr: one JSON object each, or plain text"
        " (default: $GISTSCAN_LOG_FORMAT, else json)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (SPEC §4)."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from gistscan import server  # the server's imports are only paid for when serving

        try:
            config = server.ServerConfig.from_env(os.environ)
            host, port = server.listen_address(args.host, args.port, os.environ)
        except UsageError as exc:
            print(f"gistscan: {exc.message}", file=sys.stderr)
            return EXIT_ERROR
        if args.log_format:
            config = dataclasses.replace(config, log_format=args.log_format)
        return server.run(host=host, port=port, config=config)
    try:
        query = Query(
            username=args.user,
            pattern=args.pattern,
            ignore_case=args.ignore_case,
            fixed_strings=args.fixed_strings,
            max_matches=args.max_count,
        )
        query.validate()
        flags = {
            "api_url": args.api_url,
            "concurrency": args.concurrency,
            "chunk_size": args.chunk_size,
            "regex_timeout": args.timeout,
            "max_carry": args.max_carry,
            "retries": args.retries,
        }
        # The GISTSCAN_* variables apply as they do to `serve`; a flag given wins.
        settings = Settings.from_env(
            os.environ, **{name: value for name, value in flags.items() if value is not None}
        )
    except UsageError as exc:
        print(f"gistscan: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    printer = _Printer(json_out=args.json, color=color, progress_to=sys.stderr)
    try:
        return asyncio.run(printer.run(query, settings))
    except KeyboardInterrupt:
        printer.clear_progress()
        print("gistscan: interrupted", file=sys.stderr)
        return 130


class _Printer:
    """Writes records as they come: grep-like lines or NDJSON on stdout, the rest on stderr."""

    def __init__(self, *, json_out: bool, color: bool, progress_to: TextIO) -> None:
        self.json_out = json_out
        self.color = color
        self.err = progress_to
        self.live = progress_to.isatty()  # a progress line only on a terminal
        self.progress = Progress()
        self._shown = False

    async def run(self, query: Query, settings: Settings) -> int:
        ticker = asyncio.create_task(self._tick()) if self.live else None
        errors = matches = 0
        try:
            async with aclosing(search(query, settings, progress=self.progress)) as records:
                async for record in records:
                    if isinstance(record, Match):
                        matches += 1
                    elif isinstance(record, Error):
                        errors += 1
                    self.write(record)
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as grep and ripgrep do.
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return EXIT_MATCH if matches else EXIT_NO_MATCH
        finally:
            if ticker:
                ticker.cancel()
            self.clear_progress()
        if errors:
            return EXIT_ERROR
        return EXIT_MATCH if matches else EXIT_NO_MATCH

    def write(self, record: Match | Error | Summary) -> None:
        if self.json_out:
            self.clear_progress()
            sys.stdout.buffer.write(encode(record))
            sys.stdout.flush()
        elif isinstance(record, Match):
            self.clear_progress()
            line = self._highlight(record) if self.color else record.line
            sys.stdout.write(f"{record.gist_id}/{record.filename}:{record.line_number}:{line}\n")
            sys.stdout.flush()
        else:
            self.clear_progress()
            print(_describe(record), file=self.err, flush=True)

    def _highlight(self, m: Match) -> str:
        """The line with the match's first line marked (the line may be cut, SPEC §2)."""
        part = m.match.split("\n", 1)[0]
        at = m.column - 1
        if m.line[at : at + len(part)] != part:
            at = min(m.column - 1, 100)  # a cut line starts at most 100 characters before
        if m.line[at : at + len(part)] != part:
            return m.line
        return f"{m.line[:at]}{HIGHLIGHT}{part}{RESET}{m.line[at + len(part) :]}"

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


def _describe(record: Error | Summary) -> str:
    if isinstance(record, Error):
        where = f"{record.gist_id}/{record.filename}: " if record.gist_id else ""
        if record.gist_id and record.filename is None:
            where = f"{record.gist_id}: "
        return f"gistscan: {where}{record.code}: {record.message}"
    state = "" if record.complete else ", incomplete"
    return (
        f"gistscan: {_n(record.matches, 'match')} in {_n(record.files, 'file')} of"
        f" {_n(record.gists, 'gist')} of {record.username} ({record.skipped} binary skipped,"
        f" {_size(record.bytes)}, {_n(record.errors, 'error')}{state})"
        f" in {record.elapsed_ms / 1000:.1f} s"
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
