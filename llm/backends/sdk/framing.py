"""The framing of a streamed body, as `llm.backends.sdk.transport.LimitedStream` checks it: the bytes and lines of
one event (a server-sent event, an NDJSON line) and the pieces an SDK's event decoder is handed.

Server-sent events: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation;
NDJSON, Ollama's stream: https://github.com/ollama/ollama/blob/main/docs/api.md#streaming-responses.
"""

from __future__ import annotations

import re

__all__ = ["HOLD_LIMIT", "MAX_EVENT_LINES", "EventBounds", "LineBounds", "LineHolder", "ResponseTooLarge"]

#: Lines in one server-sent event: real ones have two (`event:` and `data:`). The bound also keeps Anthropic's event
#: decoder, which joins an event's lines by repeated concatenation (quadratic in their number), linear.
MAX_EVENT_LINES = 1000
#: The most of an unfinished line `LineHolder` holds back before passing it on.
HOLD_LIMIT = 64 * 1024


class ResponseTooLarge(Exception):
    """A response body or stream event passed its `ResponseLimits`; the adapters report it as `LLMServerError`."""


class LineHolder:
    """Holds back the pieces of an unfinished line until a line end or `HOLD_LIMIT` bytes arrive, so that an SDK's
    event decoder, which copies its pending event once per piece it is handed (`data += line` in the Stainless SDKs'
    `SSEDecoder`), gets one long line in a few large pieces rather than thousands of small ones: linear, where a
    server dripping a long event in tiny pieces would make it quadratic. Nothing a decoder could use is delayed: it
    waits for the line end anyway."""

    __slots__ = ("held", "size")

    def __init__(self) -> None:
        self.held: list[bytes] = []
        self.size = 0

    def pass_on(self, piece: bytes) -> bytes:
        """What to hand on now of `piece`, with whatever was held before it (empty while it is held)."""
        if self.size + len(piece) < HOLD_LIMIT and piece.rfind(b"\n") < 0 and b"\r" not in piece:
            self.held.append(piece)
            self.size += len(piece)
            return b""
        if not self.held:
            return piece
        self.held.append(piece)
        return self.release()

    def release(self) -> bytes:
        """Everything held, at the end of the body."""
        joined = b"".join(self.held)
        self.held.clear()
        self.size = 0
        return joined


_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventBounds:
    """Counts the bytes and lines of the current server-sent event across pieces (a blank line ends an event; a line
    ends in CR, LF or CRLF, which may be split between pieces) and raises `ResponseTooLarge` past the bounds."""

    __slots__ = ("event_bytes", "event_lines", "limit", "line", "split_crlf")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.line = 0  # bytes of the unfinished line
        self.event_bytes = 0
        self.event_lines = 0
        self.split_crlf = False  # the last piece ended in CR: a LF starting the next one belongs to it

    def feed(self, piece: bytes) -> None:
        if (not self.split_crlf and b"\r" not in piece
                and self.event_bytes + self.line + len(piece) <= self.limit
                and self.event_lines + piece.count(b"\n") <= MAX_EVENT_LINES):
            # The common case: LF line ends, and no bound can be passed within this piece.
            if piece.endswith(b"\n\n"):  # it ends an event (a vendor's whole event per piece): nothing is left
                self.line = self.event_bytes = self.event_lines = 0
            else:
                self._feed_within_bounds(piece)
            return
        self.feed_lines(piece)

    def feed_lines(self, piece: bytes) -> None:
        """`feed` line by line, for any piece: what the fast paths of `feed` must count the same as."""
        start = 1 if self.split_crlf and piece[:1] == b"\n" else 0
        for match in _LINE_END.finditer(piece, start):
            length = self.line + match.start() - start
            self.line = 0
            start = match.end()
            if length == 0:
                self.event_bytes = self.event_lines = 0
                continue
            self.event_bytes += length
            self.event_lines += 1
            self._check(0)
        self.split_crlf = piece.endswith(b"\r")
        self.line += len(piece) - start
        self._check(self.line)

    def _feed_within_bounds(self, piece: bytes) -> None:
        """`feed` for a piece with LF line ends only that cannot pass a bound (the caller checked): only the state at
        its end is needed, which depends on the text after the last blank line alone, counted without a loop."""
        blank = piece.rfind(b"\n\n")
        if blank >= 0:  # the last blank line ends an event: the next one starts after it
            piece = piece[blank + 2:]
            self.line = self.event_bytes = self.event_lines = 0
        elif self.line == 0 and piece[:1] == b"\n":  # the only blank line: the previous piece ended a line
            piece = piece[1:]
            self.event_bytes = self.event_lines = 0
        lines = piece.count(b"\n")  # no blank line is left: every line ended here is part of the current event
        if lines:
            last = piece.rfind(b"\n")
            self.event_bytes += self.line + last + 1 - lines
            self.event_lines += lines
            self.line = len(piece) - last - 1
        else:
            self.line += len(piece)

    def _check(self, unfinished: int) -> None:
        if self.event_bytes + unfinished > self.limit:
            raise ResponseTooLarge(f"a stream event passed max_event_bytes ({self.limit} bytes)")
        if self.event_lines > MAX_EVENT_LINES:
            raise ResponseTooLarge(f"a stream event passed {MAX_EVENT_LINES} lines")


class LineBounds:
    """Counts the bytes of the current line of a line-framed stream (NDJSON: one event per LF-ended line) across
    pieces and raises `ResponseTooLarge` past `limit`; a piece is scanned line by line only when a line in it could
    be too long."""

    __slots__ = ("limit", "line")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.line = 0  # bytes of the unfinished line

    def feed(self, piece: bytes) -> None:
        last = piece.rfind(b"\n")
        if last < 0:
            self.line += len(piece)
        else:
            if self.line + last > self.limit:
                start = 0
                while start <= last:
                    end = piece.index(b"\n", start)
                    self._check(self.line + end - start)
                    self.line, start = 0, end + 1
            self.line = len(piece) - last - 1
        self._check(self.line)

    def _check(self, length: int) -> None:
        if length > self.limit:
            raise ResponseTooLarge(f"a stream line passed max_event_bytes ({self.limit} bytes)")
