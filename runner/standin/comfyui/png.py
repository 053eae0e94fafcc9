"""Minimal PNG encoder and decoder (8-bit grey, RGB, grey+alpha and RGBA, not interlaced)."""

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
_CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}  # PNG colour type -> channels


class Image:
    """Image is one picture: width x height pixels of `channels` bytes each, rows top down."""

    def __init__(self, width, height, channels, data):
        if len(data) != width * height * channels:
            raise ValueError(f"image data is {len(data)} bytes, want {width}x{height}x{channels}")
        self.width = width
        self.height = height
        self.channels = channels
        self.data = data


def _chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def encode(img, text=None, level=4):
    """encode returns the PNG file of img, with optional tEXt chunks from the dict text."""
    stride = img.width * img.channels
    raw = bytearray()
    data = img.data
    for y in range(img.height):
        raw.append(0)
        raw += data[y * stride:(y + 1) * stride]
    out = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", img.width, img.height, 8, _COLOR_TYPES[img.channels], 0, 0, 0))]
    for k, v in (text or {}).items():
        out.append(_chunk(b"tEXt", k.encode("latin-1") + b"\x00" + v.encode("latin-1", "replace")))
    out.append(_chunk(b"IDAT", zlib.compress(bytes(raw), level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    if pb <= pc:
        return b
    return c


def decode(blob):
    """decode parses a PNG file into an Image; it raises ValueError for anything else."""
    if not blob.startswith(SIGNATURE):
        raise ValueError("not a PNG file")
    pos = len(SIGNATURE)
    idat = bytearray()
    width = height = ctype = None
    while pos + 8 <= len(blob):
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        kind = blob[pos + 4:pos + 8]
        payload = blob[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", payload)
            if depth != 8 or ctype not in _CHANNELS or interlace != 0:
                raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {ctype}, interlace {interlace})")
        elif kind == b"IDAT":
            idat += payload
        elif kind == b"IEND":
            break
    if width is None:
        raise ValueError("PNG without IHDR")
    raw = zlib.decompress(bytes(idat))
    bpp = _CHANNELS[ctype]
    stride = width * bpp
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                ul = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], ul)) & 0xFF
        elif f != 0:
            raise ValueError(f"bad PNG filter {f}")
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return Image(width, height, bpp, bytes(out))
