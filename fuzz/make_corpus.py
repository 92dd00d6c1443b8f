#!/usr/bin/env python3
"""fuzz/make_corpus.py -- regenerates the committed seed corpora under fuzz/corpus/.

Seeds are tiny valid and near-valid inputs (a few hundred bytes each): the fuzzer mutates
from them, and scripts/fuzz.sh runs on a temporary copy, so the committed set never grows.
Regression inputs for fixed findings live beside them as regress-*; this script leaves those
alone. Usage: python3 fuzz/make_corpus.py   (from any directory)
"""
import gzip
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(b):
    return gzip.compress(b, compresslevel=9, mtime=0)


def images(count, rows, cols, pixels, magic=0x803):
    return struct.pack(">IIII", magic, count, rows, cols) + bytes(pixels)


def labels(count, values, magic=0x801):
    return struct.pack(">II", magic, count) + bytes(values)


tiny_pixels = [0, 1, 2, 3, 127, 128, 255, 254, 17, 34, 51, 68, 200, 100, 50, 25, 0, 255]
idx = {
    "images-3x2x3": images(3, 2, 3, tiny_pixels),
    "images-1x28x28": images(1, 28, 28, [(i * 37) % 256 for i in range(784)]),
    "labels-3": labels(3, [2, 0, 1]),
    "labels-10": labels(10, list(range(10))),
    "images-truncated-header": images(3, 2, 3, [])[:10],
    "images-truncated-pixels": images(3, 2, 3, tiny_pixels[:10]),
    "images-trailing-byte": images(3, 2, 3, tiny_pixels + [7]),
    "images-zero-rows": images(5, 0, 28, []),
    "images-claims-2GB": images(2000, 1000, 1000, tiny_pixels),
    "images-huge-dims": images(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, tiny_pixels),
    "labels-out-of-range": labels(7, [0, 1, 2, 3, 4, 12, 5]),
    "labels-claims-4G": labels(0xFFFFFFFF, [1, 2, 3]),
    "labels-magic-of-images": labels(3, [2, 0, 1], magic=0x803),
}
for name, b in idx.items():
    put("idx_gz", name, b)          # fuzz_idx_gz compresses its input itself
    put("idx", name, b)             # fuzz_idx reads its input as it is: plain ...
for name in ("images-3x2x3", "labels-3", "images-claims-2GB"):
    put("idx", name + ".gz", gz(idx[name]))  # ... and gzip
put("idx", "images-3x2x3-gz-truncated", gz(idx["images-3x2x3"])[:-6])
put("idx", "images-3x2x3-gz-trailing-garbage", gz(idx["images-3x2x3"]) + b"garbage")

csv = {
    "header-crlf": "label,x,y\r\n1,0.5,-2\r\n0, 3 ,4e1\r\n2,+1.25,0",
    "semicolon-blank-lines": "1;2;3;0\n\n4;5;6;1\n7;8;9;0\n",
    "label-middle": "0.1,3.0,0.2\n0.3,1,0.4\n",
    "tabs": "1\t2\t0\t3\n4\t5\t1\t6\n",
    "spaces": "0 1.5 2.5\n1 -3e-2 4E+3\n",
    "bom": "\ufeff1,2,3\n0,4,5\n",
    "ragged": "1,2,3\n0,1,2\n1,2\n",
    "nan-inf": "1,2,nan\n0,inf,1\n",
    "bad-label": "2.5,1,2\n-1,3,4\n",
    "big-values": "0,3.4e38,1e-45\n1,-3.5e38,1e39\n",
    "empty-fields": "1,,3\n,\n",
}
for name, t in csv.items():
    put("csv", name, t)
put("csv", "semicolon.gz", gz(csv["semicolon-blank-lines"].encode()))
