"""PNG and IDX files in plain Python (zlib, struct), for the folder tests:
independent of stb, which capsnet reads and writes them with.

  python3 png_tool.py compare-idx IDX_DIR FOLDER      pixels of OUT/{train,test}/CLASS/NNNNN.png
                                                      equal IDX image NNNNN and its label's name
  python3 png_tool.py shapes OUT N SIDE SEED [MAX]    a colour set: shape is the label, colour a nuisance;
                                                      with MAX, each picture SIDE..MAX wide and high
"""
import gzip
import math
import os
import random
import struct
import sys
import zlib


def read_png(path):
    """8-bit grey or RGB, non-interlaced: (width, height, channels, bytes)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path + ": not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (0, 2), (path, header)
    channels = 1 if colour == 0 else 3
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray()
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = previous[x]
            c = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        previous = line
    return width, height, channels, bytes(out)


def write_png(path, width, height, channels, pixels):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    stride = width * channels
    raw = b"".join(b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if channels == 1 else 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))


def write_ppm(path, width, height, pixels):
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (width, height) + pixels)


def read_idx(path):
    data = open(path, "rb").read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return dims, data[4 + 4 * rank:]


def idx_file(directory, base):
    for name in (base, base + ".gz"):
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise SystemExit(base + " not found in " + directory)


def compare_idx(idx_dir, folder):
    checked = 0
    for split, prefix in (("train", "train"), ("test", "t10k")):
        dims, images = read_idx(idx_file(idx_dir, prefix + "-images-idx3-ubyte"))
        _, labels = read_idx(idx_file(idx_dir, prefix + "-labels-idx1-ubyte"))
        side = dims[1] * dims[2]
        for klass in sorted(os.listdir(os.path.join(folder, split))):
            for name in sorted(os.listdir(os.path.join(folder, split, klass))):
                index = int(name.split(".")[0])
                w, h, c, pixels = read_png(os.path.join(folder, split, klass, name))
                if (w, h, c) != (dims[2], dims[1], 1) or pixels != images[index * side:(index + 1) * side]:
                    raise SystemExit("%s/%s/%s: pixels differ from IDX image %d" % (split, klass, name, index))
                if str(labels[index]) != klass:
                    raise SystemExit("%s/%s/%s: IDX label is %d" % (split, klass, name, labels[index]))
                checked += 1
    print("compared %d pictures with their IDX images: identical" % checked)


def shapes(out, count, side, seed, max_side=None):
    """Horizontal bars, vertical bars and rings, each in a random colour on a
    darker background of a random colour, at a random place and size: the
    colour says nothing about the class. With max_side, each picture's width
    and height are drawn from [side, max_side]."""
    rng = random.Random(seed)
    smallest = side
    for klass in ("horizontal", "ring", "vertical"):
        os.makedirs(os.path.join(out, klass), exist_ok=True)
        for k in range(count):
            width_px = height_px = smallest
            if max_side:
                width_px, height_px = rng.randint(smallest, max_side), rng.randint(smallest, max_side)
            side = min(width_px, height_px)
            # Any hue, the shape lighter than its background.
            bg = [rng.randrange(0, 100) for _ in range(3)]
            fg = [min(255, v + rng.randrange(100, 156)) for v in bg]
            length, width = rng.uniform(side * 0.3, side * 0.45), rng.uniform(side * 0.08, side * 0.14)
            cx = rng.uniform(side * 0.4, side * 0.6) + (width_px - side) / 2
            cy = rng.uniform(side * 0.4, side * 0.6) + (height_px - side) / 2
            pixels = bytearray()
            for y in range(height_px):
                for x in range(width_px):
                    dx, dy = x + 0.5 - cx, y + 0.5 - cy
                    if klass == "horizontal":
                        inside = abs(dx) <= length and abs(dy) <= width
                    elif klass == "vertical":
                        inside = abs(dy) <= length and abs(dx) <= width
                    else:
                        inside = abs(math.hypot(dx, dy) - length * 0.75) <= width
                    pixels += bytes(fg if inside else bg)
            write_png(os.path.join(out, klass, "%s %03d.png" % (klass, k)), width_px, height_px, 3,
                      bytes(pixels))


if __name__ == "__main__":
    if sys.argv[1] == "compare-idx":
        compare_idx(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "shapes":
        shapes(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
               int(sys.argv[6]) if len(sys.argv) > 6 else None)
    else:
        raise SystemExit(__doc__)
