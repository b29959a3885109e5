"""The container every ramburst chunk travels in: ``magic | u32 body length | u32 crc32(body) | body``.

The volume (``RBVC``) and lossy (``RBLZ``) codecs share it, so a flipped or truncated byte is caught by the
length and the CRC-32 before any of the body is trusted.
"""

from __future__ import annotations

import struct
import zlib


class CodecError(ValueError):
    """A chunk that is not ours, is truncated or corrupted, or data the codec cannot store as asked."""


def frame(body: bytes, magic: bytes) -> bytes:
    """``body`` behind its magic, length and checksum."""
    return magic + struct.pack("<II", len(body), zlib.crc32(body)) + body


def check_frame(buf, magic) -> memoryview:
    """The body of a framed chunk after magic, length and CRC checks (CodecError otherwise)."""
    buf = memoryview(bytes(buf)) if not isinstance(buf, (bytes, memoryview)) else memoryview(buf)
    if len(buf) < 12 or bytes(buf[:4]) != magic:
        raise CodecError(f"not a {magic.decode()} chunk (bad magic or shorter than its header)")
    n, crc = struct.unpack("<II", buf[4:12])
    if len(buf) != 12 + n:
        raise CodecError(f"{magic.decode()} chunk truncated or padded: {len(buf) - 12} body bytes, header says {n}")
    body = buf[12:]
    if zlib.crc32(body) != crc:
        raise CodecError(f"{magic.decode()} chunk corrupted: checksum mismatch")
    return body


class Reader:
    """Reads a body front to back; a field running past its end is a truncated chunk."""

    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise CodecError("volume codec: chunk truncated (header says more bytes than there are)")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))
