"""An image file's format and pixel size, read from its header without decoding it.

A decoder allocates what the header claims: a 0.1 MB PNG can claim 32000x32000 pixels (3 GB
once decoded). `image_size` reads the claim first, so a caller can refuse it before any
decoder runs. It recognises a format by the same leading bytes OpenCV's decoders do, so the
format named here is the one OpenCV would use; formats it cannot size are refused rather than
decoded blind.
"""

from __future__ import annotations

import struct

FORMATS = "JPEG, PNG, BMP, WebP, TIFF, GIF, PNM or Sun raster"


class HeaderError(ValueError):
    """Not an image whose size can be read (the message says why)."""


MAX_JPEG_SEGMENTS = 1000  # real files have tens before the frame header; more is a CPU trap


def _jpeg(data: bytes) -> tuple[int, int]:
    i = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        if i + 4 > len(data):
            break
        if data[i] != 0xFF:
            raise HeaderError("a JPEG with a broken marker")
        window = data[i : i + 256]
        fill = len(window) - len(window.lstrip(b"\xff"))  # 0xFF fill bytes before the marker
        if fill >= 255:  # a run this long is not a marker
            raise HeaderError("a JPEG with a broken marker")
        i += fill
        if i >= len(data):
            break
        marker = data[i]
        i += 1
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            raise HeaderError("a JPEG without a frame header")
        if i + 2 > len(data):
            break
        (length,) = struct.unpack_from(">H", data, i)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame
            if i + 7 > len(data):
                break
            height, width = struct.unpack_from(">HH", data, i + 3)
            return width, height
        if length < 2:
            raise HeaderError("a JPEG with a broken segment length")
        i += length
    else:
        raise HeaderError(f"a JPEG with more than {MAX_JPEG_SEGMENTS} segments before its frame header")
    raise HeaderError("a JPEG cut short before its frame header")


def _webp(data: bytes) -> tuple[int, int]:
    chunk, body = data[12:16], 20
    if chunk == b"VP8 " and len(data) >= body + 10 and data[body + 3 : body + 6] == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", data, body + 6)
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= body + 5 and data[body] == 0x2F:
        (bits,) = struct.unpack_from("<I", data, body + 1)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= body + 10:
        w = int.from_bytes(data[body + 4 : body + 7], "little") + 1
        h = int.from_bytes(data[body + 7 : body + 10], "little") + 1
        return w, h
    raise HeaderError("a WebP without a readable frame header")


def _tiff(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", data, 2)[0] == 43
    try:
        if big:
            (offset,) = struct.unpack_from(order + "Q", data, 8)
            (count,) = struct.unpack_from(order + "Q", data, offset)
            start, size = offset + 8, 20
        else:
            (offset,) = struct.unpack_from(order + "I", data, 4)
            (count,) = struct.unpack_from(order + "H", data, offset)
            start, size = offset + 2, 12
        found: dict[int, int] = {}
        for k in range(min(count, 4096)):
            entry = start + k * size
            tag, kind = struct.unpack_from(order + "HH", data, entry)
            if tag not in (256, 257):
                continue
            value_at = entry + (12 if big else 8)
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if fmt is None:
                raise HeaderError("a TIFF whose size has an unknown type")
            found[tag] = struct.unpack_from(order + fmt, data, value_at)[0]
    except struct.error:
        raise HeaderError("a TIFF cut short before its size") from None
    if 256 not in found or 257 not in found:
        raise HeaderError("a TIFF without a size in its first directory")
    return found[256], found[257]


def _pnm(data: bytes) -> tuple[int, int]:
    head = data[:4096]
    if head[:2] == b"P7":  # PAM: WIDTH and HEIGHT lines
        lines = head.split(b"ENDHDR")[0].splitlines()[1:]
        fields = dict(line.split(None, 1) for line in lines if len(line.split()) == 2)
        try:
            return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
        except (KeyError, ValueError):
            raise HeaderError("a PAM without WIDTH and HEIGHT") from None
    tokens: list[bytes] = []
    for line in head[2:].splitlines():
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            break
    try:
        return int(tokens[0]), int(tokens[1])
    except (IndexError, ValueError):
        raise HeaderError("a PNM without a width and height") from None


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) that the image in `data` claims; HeaderError when the bytes are
    not an image of a format listed in FORMATS, or its header is cut short or broken."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            if data[12:16] != b"IHDR":
                raise HeaderError("a PNG without its IHDR header")
            return ("PNG", *struct.unpack_from(">II", data, 16))
        if data[:3] == b"\xff\xd8\xff":
            return ("JPEG", *_jpeg(data))
        if data[:2] == b"BM":
            (dib,) = struct.unpack_from("<I", data, 14)
            if dib == 12:  # OS/2 bitmap header: 16-bit sizes
                return ("BMP", *struct.unpack_from("<HH", data, 18))
            w, h = struct.unpack_from("<ii", data, 18)
            return "BMP", abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:15] == b"WEBPVP8":
            return ("WebP", *_webp(data))
        if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            return ("TIFF", *_tiff(data))
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return ("GIF", *struct.unpack_from("<HH", data, 6))
        if data[:4] == b"\x59\xa6\x6a\x95":
            return ("Sun raster", *struct.unpack_from(">II", data, 4))
        if len(data) > 2 and data[:1] == b"P" and data[1:2] in b"1234567" and data[2:3].isspace():
            return ("PNM", *_pnm(data))
    except struct.error:
        raise HeaderError("an image cut short before its size") from None
    raise HeaderError(f"not a {FORMATS} image")
