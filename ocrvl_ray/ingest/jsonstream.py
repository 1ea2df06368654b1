"""Incremental reader of ``{"images": [...], "annotations": [...], ...}`` files of any size.

Yields the elements of the two top-level arrays one at a time; every other top-level value is parsed and
dropped. Each element is decoded by the C scanner of the standard ``json`` module (``raw_decode``) on a text
buffer that is refilled from the file, so it runs at ``json.loads`` speed with memory bounded by the buffer
plus one element.
"""
from __future__ import annotations

import codecs
import json
import re
from typing import Any, BinaryIO, Iterator

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
STREAMED_KEYS = ("images", "annotations")


class NotACollection(ValueError):
    """The top-level value is not a JSON object."""


class Malformed(ValueError):
    """Invalid or truncated JSON."""


class _Buffer:
    def __init__(self, f: BinaryIO, chunk: int, max_element: int):
        self.f, self.chunk, self.max_element = f, chunk, max_element
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()  # raises UnicodeDecodeError on bad bytes
        self.buf, self.pos, self.eof = "", 0, False
        self.offset = 0  # characters of the file before ``buf`` (positions in errors are absolute)

    def fill(self, size: int) -> bool:
        """Append about ``size`` more bytes of text; False at end of file."""
        if self.eof:
            return False
        data = self.f.read(size)
        text = self.decoder.decode(data, final=not data)
        self.offset += self.pos
        self.buf = self.buf[self.pos:] + text
        self.pos = 0
        self.eof = not data
        if len(self.buf) > self.max_element:
            raise Malformed(f"a single JSON value is larger than {self.max_element} characters")
        return True

    def peek(self) -> str:
        """Next non-whitespace character ('' at end of file), without consuming it."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill(self.chunk):
                return ""

    def take(self, expected: str) -> None:
        if self.peek() != expected:
            raise Malformed(f"expected {expected!r} at character {self.offset + self.pos}")
        self.pos += 1

    def value(self) -> Any:
        """Decode one complete JSON value; refills (doubling the read size) until it is whole."""
        self.peek()
        size = self.chunk
        while True:
            try:
                v, end = _DECODER.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:  # a value ending at the buffer's end may be cut short
                    self.pos = end
                    return v
            except json.JSONDecodeError as e:
                if self.eof:
                    raise Malformed(f"{e.msg} at character {self.offset + e.pos}") from None
            if not self.fill(size):
                continue  # now at eof: one last try
            size *= 2


def iter_collection(f: BinaryIO, chunk: int = 1 << 20, max_element: int = 1 << 30) -> Iterator[tuple[str, Any]]:
    """``("images", entry)`` / ``("annotations", entry)`` in file order.

    Raises ``NotACollection`` if the file is not a JSON object, ``Malformed`` on bad JSON and
    ``UnicodeDecodeError`` on bytes that are not UTF-8.
    """
    r = _Buffer(f, chunk, max_element)
    if r.peek() != "{":
        raise NotACollection("top-level value is not an object")
    r.pos += 1
    if r.peek() == "}":
        return
    while True:
        key = r.value()
        if not isinstance(key, str):
            raise Malformed(f"object key expected at character {r.offset + r.pos}")
        r.take(":")
        if key in STREAMED_KEYS and r.peek() == "[":
            r.pos += 1
            if r.peek() == "]":
                r.pos += 1
            else:
                while True:
                    yield key, r.value()
                    c = r.peek()
                    r.pos += 1
                    if c == "]":
                        break
                    if c != ",":
                        raise Malformed(f"expected ',' or ']' in {key} at character {r.offset + r.pos - 1}")
        else:
            r.value()
        c = r.peek()
        r.pos += 1
        if c == "}":
            return
        if c != ",":
            raise Malformed(f"expected ',' or '}}' at character {r.offset + r.pos - 1}")
