"""After the scanner: hits as grep reports them (matching lines, per-file stops, context)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from gistscan.listing import GistFile
from gistscan.records import Context, Match
from gistscan.scanner import Hit

CONTEXT_CUT = 400  # a context line is cut to its first 400 characters, as a match's line is
# Bytes kept of a line for context: enough for CONTEXT_CUT characters (4 bytes each at
# most), plus a BOM and a carriage return.
KEEP_BYTES = 4 * CONTEXT_CUT + 8


@dataclass(frozen=True, slots=True)
class LineOptions:
    """What to report of each file (grep's options): at most `max_count` matching lines, or
    only its first match (`first_match_only`, for -l); `before`/`after` context lines."""

    max_count: int | None = None
    first_match_only: bool = False
    before: int = 0
    after: int = 0


@dataclass(frozen=True, slots=True)
class LineDone:
    """Every match on this matching line has been yielded: the line can be printed now.

    Sent only when nothing else of the file follows right away: any later record of the
    same file (a match on another line, a context line) or its end also means the line is
    complete. (One LineDone per matching line would double the events a search carries.)
    """

    file: GistFile
    line_number: int


LineEvent = Match | Context | LineDone


def match_record(file: GistFile, hit: Hit) -> Match:
    return Match(
        gist_id=file.gist_id,
        filename=file.filename,
        line_number=hit.line_number,
        column=hit.column,
        line=hit.line,
        match=hit.text,
        html_url=file.html_url,
        raw_url=file.raw_url,
    )


class FileLines:
    """One file's hits turned into records, in file order, as soon as each is certain.

    Fed the file's bytes (`feed`; kept only when context is asked for) and, after each piece,
    the scanner's hits and its `settled_lines` (`add`), it gives `Match` records as they come,
    a `LineDone` once every match of a matching line is out (unless another record of the
    file follows in the same batch, which says as much), and `Context` records for the
    lines around matching lines. It applies the per-file stops: once `max_count` matching
    lines (or, with `first_match_only`, one match) are out, `scanning` turns false (the
    scanner need not run), and `done` turns true once the trailing context is out too: the
    caller then stops reading the file.

    Invariants (line numbers count `\\n`, 1-based):
    - every line up to `_done_upto` is decided: printed (match or context), in `_ring`, or
      dropped; `_lines` holds the heads of the complete lines `_done_upto + 1 .. _received`
      (empty when `_done_upto >= _received`; `_done_upto` may be `_received + 1` when the
      matching line is the incomplete one), `_partial` the head of the line being read;
    - `_ring` holds at most `before` decided, unprinted lines, the latest ones, all after
      the last printed line;
    - `_current` is the matching line whose matches are out but not yet its `LineDone`.

    Memory: `before` lines, plus the lines the scanner has read but not settled (bounded by
    its chunk and carry), each cut to KEEP_BYTES bytes; nothing when no context is asked for.
    """

    def __init__(self, file: GistFile, options: LineOptions = LineOptions()) -> None:
        self.file = file
        self.options = options
        self._context = options.before > 0 or options.after > 0
        self._plain = not (self._context or options.max_count or options.first_match_only)
        self._lines: deque[bytes] = deque()
        self._partial = bytearray()
        self._received = 0
        self._done_upto = 0
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=options.before or None)
        self._after_until = 0  # lines up to this one are after-context of a matching line
        self._current: int | None = None
        self._matched_lines = 0
        self._stopped = False

    @property
    def scanning(self) -> bool:
        """Whether hits are still wanted (false once the per-file stop is reached)."""
        return not self._stopped

    @property
    def done(self) -> bool:
        """Whether nothing more of the file is wanted: stopped, trailing context out."""
        return self._stopped and (not self._context or self._done_upto >= self._after_until)

    def feed(self, data: bytes) -> None:
        """The file's next bytes, before `add` is given the hits the scanner found in them."""
        if not self._context:
            return
        *complete, rest = data.split(b"\n")
        for part in complete:
            self._partial += part[: KEEP_BYTES - len(self._partial)]
            self._completed(bytes(self._partial))
            self._partial.clear()
        self._partial += rest[: max(0, KEEP_BYTES - len(self._partial))]

    def add(self, hits: list[Hit], settled_lines: int) -> list[LineEvent]:
        """The scanner's next hits and its `settled_lines`: the records they make certain."""
        if self._plain:
            # No stop, no context (most searches): the matches as they come, and a
            # LineDone when the last one's line is complete (earlier lines are implied).
            out: list[LineEvent] = [match_record(self.file, hit) for hit in hits]
            if hits:
                self._current = hits[-1].line_number
            if self._current is not None and self._current <= settled_lines:
                out.append(LineDone(self.file, self._current))
                self._current = None
            return out
        out = []
        for hit in hits:
            if self._stopped:
                break
            if self._current is not None and hit.line_number != self._current:
                self._line_done(out)
                if self._stopped:
                    break
            if self._current is None:
                self._matching_line(hit.line_number, out)
            out.append(match_record(self.file, hit))
            if self.options.first_match_only:
                self._line_done(out)
                self._stopped = True
        if not self._stopped and self._current is not None and self._current <= settled_lines:
            self._line_done(out)
        # Past the stop only trailing context is wanted, whether or not its lines match.
        self._advance(self._received if self._stopped else min(settled_lines, self._received), out)
        return [e for i, e in enumerate(out) if not isinstance(e, LineDone) or i == len(out) - 1]

    def close(self, hits: list[Hit]) -> list[LineEvent]:
        """The end of the file, with the scanner's last hits (from its `close`)."""
        if self._context and self._partial:  # a last line without `\n`
            self._completed(bytes(self._partial))
            self._partial.clear()
        out = self.add(hits, self._received + 1)
        if self._current is not None:  # no context: `_received` is not counted
            self._line_done(out)
        return out  # the file's end follows: it completes a line as a LineDone would

    def _completed(self, head: bytes) -> None:
        self._received += 1
        n = self._received
        if n > self._done_upto and (not self._stopped or n <= self._after_until):
            self._lines.append(head)

    def _matching_line(self, n: int, out: list[LineEvent]) -> None:
        """Line `n` has a match: the lines before it are decided; print its before-context."""
        self._advance(n - 1, out)
        if self._context:
            for k, head in self._ring:
                if k >= n - self.options.before:
                    out.append(self._context_record(k, head))
            self._ring.clear()
            if self._lines and self._done_upto < n <= self._received:
                self._lines.popleft()  # its own text comes with its matches
        self._done_upto = max(self._done_upto, n)
        self._current = n
        self._matched_lines += 1
        self._after_until = n + self.options.after

    def _line_done(self, out: list[LineEvent]) -> None:
        assert self._current is not None
        out.append(LineDone(self.file, self._current))
        self._current = None
        if self.options.max_count is not None and self._matched_lines >= self.options.max_count:
            self._stopped = True

    def _advance(self, upto: int, out: list[LineEvent]) -> None:
        """Lines up to `upto` are decided as not matching: after-context, or into the ring."""
        if not self._context:
            self._done_upto = max(self._done_upto, upto)
            return
        while self._done_upto < upto and self._lines:
            head = self._lines.popleft()
            self._done_upto += 1
            if self._done_upto <= self._after_until:
                out.append(self._context_record(self._done_upto, head))
            elif self.options.before and not self._stopped:
                self._ring.append((self._done_upto, head))

    def _context_record(self, n: int, head: bytes) -> Context:
        # Decoded as the scanner decodes (a line never splits a UTF-8 sequence: `\n` is
        # ASCII), then cut as docs/records.md says; KEEP_BYTES leaves over 400 characters.
        text = head.decode("utf-8", "replace")
        if n == 1 and text.startswith("\ufeff"):
            text = text[1:]
        if text.endswith("\r"):
            text = text[:-1]
        return Context(self.file.gist_id, self.file.filename, n, text[:CONTEXT_CUT])
