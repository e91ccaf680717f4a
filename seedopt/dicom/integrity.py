"""Whether a DICOM file is complete: every data element, item and sequence it opens ends
inside the file, and the file ends where its last element does.

pydicom reads a cut file without complaint when the cut falls inside a sequence of undefined
length (it takes the end of the file for the end of the sequence), so a truncated RT Plan
would give part of its seeds. This walks the encoded bytes (the File Meta group, then the data
set in its transfer syntax: implicit or explicit VR, little or big endian, deflated) and checks
the nesting, before any value is read.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, keyword_for_tag

IMPLICIT_LITTLE = "1.2.840.10008.1.2"
EXPLICIT_BIG = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
MAX_DEPTH = 64


class Incomplete(ValueError):
    """The file ends (or breaks off) inside a data element, item or sequence."""


@dataclass(frozen=True)
class _Syntax:
    explicit: bool
    little: bool

    def u16(self, buf: bytes, pos: int) -> int:
        return struct.unpack_from("<H" if self.little else ">H", buf, pos)[0]

    def u32(self, buf: bytes, pos: int) -> int:
        return struct.unpack_from("<I" if self.little else ">I", buf, pos)[0]


def tag_name(tag: int) -> str:
    """``Keyword (gggg,eeee)``, or the tag alone when the dictionary does not know it."""
    keyword = keyword_for_tag(tag) if tag >> 16 != 0xFFFE else ""
    label = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return f"{keyword} {label}" if keyword else label


def _is_sequence(tag: int) -> bool:
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


class _Walker:
    def __init__(self, buf: bytes, offset: int) -> None:
        self.buf = buf
        self.offset = offset  # bytes before ``buf`` in the file (for the messages)

    def at(self, pos: int) -> str:
        return f"byte {self.offset + pos}"

    def need(self, pos: int, n: int, limit: int, what: str) -> None:
        """An error unless ``n`` bytes from ``pos`` lie before ``limit``."""
        if pos + n > limit:
            where = "the file" if limit == len(self.buf) else "its item"
            raise Incomplete(
                f"{what} at {self.at(pos)} needs {n} bytes; {max(limit - pos, 0)} remain in {where}"
            )

    def header(self, pos: int, tag: int, syn: _Syntax, limit: int) -> tuple[bytes, int, int]:
        """The VR (b"" in implicit VR), value length and value start of the element at
        ``pos`` (its 8 first bytes known to be there)."""
        if not syn.explicit:
            return b"", syn.u32(self.buf, pos + 4), pos + 8
        vr = self.buf[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            self.need(pos, 12, limit, f"the header of {tag_name(tag)}")
            return vr, syn.u32(self.buf, pos + 8), pos + 12
        return vr, syn.u16(self.buf, pos + 6), pos + 8

    def elements(self, pos: int, end: int | None, syn: _Syntax, depth: int, inside: str) -> int:
        """Data elements from ``pos`` to ``end`` (a defined length) or to an item delimiter
        (``end`` None); returns the position after them."""
        if depth > MAX_DEPTH:
            raise Incomplete(f"sequences nested more than {MAX_DEPTH} deep at {self.at(pos)}")
        limit = len(self.buf) if end is None else end
        while True:
            if end is not None and pos == end:
                return pos
            if end is None and pos == len(self.buf):
                raise Incomplete(f"the file ends inside an item of {inside} (no item delimiter)")
            self.need(pos, 8, limit, "a data element")
            tag = (syn.u16(self.buf, pos) << 16) | syn.u16(self.buf, pos + 2)
            if tag == ITEM_END:
                if end is not None:
                    raise Incomplete(
                        f"an item delimiter at {self.at(pos)} in a defined-length item"
                    )
                return pos + 8
            if tag == SEQUENCE_END and syn.u32(self.buf, pos + 4) == 0:
                pos += 8  # a stray delimiter after a defined-length sequence: nothing lost
                continue
            if tag >> 16 == 0xFFFE:
                raise Incomplete(f"a misplaced item tag {tag_name(tag)} at {self.at(pos)}")
            vr, length, start = self.header(pos, tag, syn, limit)
            sequence = vr == b"SQ" or (not syn.explicit and _is_sequence(tag))
            if length == UNDEFINED:
                if tag == PIXEL_DATA:
                    pos = self.items(start, None, syn, depth, tag_name(tag), fragments=True)
                elif sequence or vr == b"UN" or not syn.explicit:
                    nested = _Syntax(False, True) if vr == b"UN" else syn
                    pos = self.items(start, None, nested, depth, tag_name(tag))
                else:
                    raise Incomplete(f"{tag_name(tag)} at {self.at(pos)} has an undefined length")
                continue
            self.need(
                start, length, limit, f"the value of {tag_name(tag)} (declared {length} bytes)"
            )
            if sequence:
                self.items(start, start + length, syn, depth, tag_name(tag))
            pos = start + length

    def items(
        self,
        pos: int,
        end: int | None,
        syn: _Syntax,
        depth: int,
        inside: str,
        fragments: bool = False,
    ) -> int:
        """The items of a sequence (or pixel data fragments) from ``pos`` to ``end`` or to a
        sequence delimiter; returns the position after them."""
        limit = len(self.buf) if end is None else end
        while True:
            if end is not None and pos == end:
                return pos
            if end is not None and pos > end:
                raise Incomplete(f"an item of {inside} runs past the end of its sequence")
            if end is None and pos == len(self.buf):
                raise Incomplete(f"the file ends inside {inside} (no sequence delimiter)")
            self.need(pos, 8, limit, f"an item of {inside}")
            tag = (syn.u16(self.buf, pos) << 16) | syn.u16(self.buf, pos + 2)
            length = syn.u32(self.buf, pos + 4)
            if tag == SEQUENCE_END and end is None:
                return pos + 8
            if tag != ITEM:
                raise Incomplete(
                    f"{inside}: expected an item at {self.at(pos)}, found {tag_name(tag)}"
                )
            start = pos + 8
            if length == UNDEFINED and not fragments:
                pos = self.elements(start, None, syn, depth + 1, inside)
                continue
            if length == UNDEFINED:
                raise Incomplete(f"a pixel data fragment at {self.at(pos)} has an undefined length")
            self.need(start, length, limit, f"an item of {inside} (declared {length} bytes)")
            if not fragments:
                self.elements(start, start + length, syn, depth + 1, inside)
            pos = start + length


def _meta(buf: bytes) -> tuple[int, str]:
    """Where the data set starts after the File Meta group, and its transfer syntax."""
    walker = _Walker(buf, 0)
    syn = _Syntax(True, True)
    pos, syntax = 132, IMPLICIT_LITTLE
    while pos + 8 <= len(buf) and syn.u16(buf, pos) == 0x0002:
        tag = (syn.u16(buf, pos) << 16) | syn.u16(buf, pos + 2)
        _, length, start = walker.header(pos, tag, syn, len(buf))
        walker.need(start, length, len(buf), tag_name(tag))
        if tag == 0x00020010:
            syntax = buf[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    return pos, syntax


def check_complete(buf: bytes) -> None:
    """Raise ``Incomplete`` (its message says where) unless the DICOM Part 10 file ``buf``
    (128-byte preamble, "DICM") is complete and well nested."""
    pos, syntax = _meta(buf)
    body, offset = buf[pos:], pos
    if syntax == DEFLATED:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body) + inflater.flush()
        except zlib.error as exc:
            raise Incomplete(f"the deflated data set cannot be inflated ({exc})") from None
        if not inflater.eof:
            raise Incomplete("the deflated data set is cut short")
        offset = 0
    syn = _Syntax(syntax != IMPLICIT_LITTLE, syntax != EXPLICIT_BIG)
    _Walker(body, offset).elements(0, len(body), syn, 0, "the data set")
