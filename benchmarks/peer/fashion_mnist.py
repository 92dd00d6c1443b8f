"""Fashion-MNIST for the PyTorch peer, read exactly as fasttrain reads it.

Reads the four gzip IDX files of Debian's `dataset-fashion-mnist` package (default directory
/usr/share/datasets/fashion-mnist) with gzip + numpy: no torchvision, no downloads. Pixels are
scaled to [0, 1] and then normalised with the training set's *global* mean and standard deviation
(one value over every pixel of every training image, population stddev, as
fasttrain::data::Normalizer::fit does by default); the test set gets the training statistics.

Works with a current PyTorch and with Debian 12's python3-torch 1.13 (Python 3.11).

    from fashion_mnist import load
    d = load("/usr/share/datasets/fashion-mnist")   # dict of tensors
    d["train_x"].shape  # (60000, 1, 28, 28) float32, d["train_y"]: (60000,) int64
"""

import gzip
import math
import os

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}


class DatasetError(RuntimeError):
    pass


def _read_idx(path, expect_dims):
    """Reads one gzip IDX file of unsigned bytes; returns a uint8 array of its shape."""
    if not os.path.exists(path):
        raise DatasetError(
            f"{path}: not found (install Debian's dataset-fashion-mnist: "
            "apt-get install -y dataset-fashion-mnist, or pass --data DIR)")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DatasetError(f"{path}: element type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    dims = raw[3]
    if dims != expect_dims:
        raise DatasetError(f"{path}: {dims} dimensions, expected {expect_dims}")
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    count = int(np.prod(shape))
    if len(raw) != header + count:
        raise DatasetError(f"{path}: {len(raw) - header} data bytes, the header says {count}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_numpy(data_dir=DEFAULT_DIR):
    """Returns a dict of numpy arrays: train_x / test_x float32 (N, 1, 28, 28) normalised,
    train_y / test_y int64 (N,), and the fitted mean / std (Python floats)."""
    arrays = {k: _read_idx(os.path.join(data_dir, f), 3 if k.endswith("_x") else 1)
              for k, f in _FILES.items()}
    for part in ("train", "test"):
        n_x, n_y = arrays[part + "_x"].shape[0], arrays[part + "_y"].shape[0]
        if n_x != n_y:
            raise DatasetError(f"{data_dir}: {part} has {n_x} images but {n_y} labels")
        if arrays[part + "_y"].max() > 9:
            raise DatasetError(f"{data_dir}: {part} labels outside 0..9")
    # In place, in float32, and the statistics in float64 chunks: the peak stays near the final
    # arrays' size (a peer's peak RSS is one of the compared figures).
    train_x = arrays.pop("train_x").astype(np.float32)
    train_x /= np.float32(255.0)
    test_x = arrays.pop("test_x").astype(np.float32)
    test_x /= np.float32(255.0)
    flat = train_x.reshape(-1)
    total, total_sq = 0.0, 0.0
    for i in range(0, flat.size, 1 << 20):
        c = flat[i:i + (1 << 20)].astype(np.float64)
        total += float(c.sum())
        total_sq += float(np.dot(c, c))
    mean = total / flat.size
    std = max(math.sqrt(max(total_sq / flat.size - mean * mean, 0.0)), 1e-6)  # population stddev
    for x in (train_x, test_x):
        x -= np.float32(mean)
        x *= np.float32(1.0 / std)
    return {
        "train_x": train_x.reshape(-1, 1, 28, 28),
        "train_y": arrays["train_y"].astype(np.int64),
        "test_x": test_x.reshape(-1, 1, 28, 28),
        "test_y": arrays["test_y"].astype(np.int64),
        "mean": mean,
        "std": std,
    }


def load(data_dir=DEFAULT_DIR):
    """Like load_numpy, with torch tensors (contiguous, CPU) in place of the arrays."""
    import torch

    d = load_numpy(data_dir)
    for k in ("train_x", "train_y", "test_x", "test_y"):
        d[k] = torch.from_numpy(d[k])
    return d


if __name__ == "__main__":
    import sys

    d = load_numpy(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DIR)
    print({k: (v.shape, str(v.dtype)) if hasattr(v, "shape") else v for k, v in d.items()})
