#!/usr/bin/env python3
"""The PyTorch side of the fasttrain-vs-PyTorch speed comparison (benchmarks/peer/).

Trains the same models as fasttrain's examples, on the same data and hyperparameters:

  mlp: 784-256-128-10, ReLU                       (examples/fashion_mnist_mlp)
  cnn: conv5x5(1->32, pad 2)-ReLU-maxpool2 -
       conv5x5(32->64, pad 2)-ReLU-maxpool2 -
       flatten(3136)-fc1024-ReLU-fc10             (examples/fashion_mnist_cnn)

The hyperparameters default to those of fasttrain's examples (examples/example_main.hpp):
SGD with momentum 0.9 and Nesterov, base rate 0.05 (mlp) / 0.02 (cnn), a linear warmup of 0 (mlp)
/ 0.5 (cnn) epochs times a cosine decay over the run, evaluated per step as fasttrain's
schedule is, decoupled weight decay 5e-5 applied as fasttrain's SGD does (the examples hard-code
it; --weight-decay 0 turns it off); softmax cross-entropy; He-uniform weights and zero biases;
batch 128, the last batch of an epoch being the smaller remainder, as fasttrain's Loader does by
default; a fresh torch.randperm order each epoch. Fractional epochs run ceil(epochs *
batches_per_epoch) steps, as fasttrain does.

The whole data set stays in memory as tensors; a batch is an index_select of the permutation's
slice (no DataLoader, no worker processes). Only the training loop is timed (ordering, batch
gather, forward, loss, backward, step); evaluation is outside it, as in fasttrain's Trainer.

    python3 torch_train.py --model mlp --epochs 2 --seed 1 --threads 2 --batch 128 --eval

Ends its output with ONE JSON line: name, torch_version, threads, batch, epochs, steps,
samples, samples_per_second, train_seconds, test_accuracy (null without --eval),
final_train_loss, peak_rss_mb, ...
"""

import argparse
import json
import math
import os
import platform
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fashion_mnist import DEFAULT_DIR, load  # noqa: E402


# The defaults of fasttrain's examples/fashion_mnist_{mlp,cnn} (examples/example_main.hpp).
EXAMPLE_DEFAULTS = {"mlp": {"lr": 0.05, "warmup": 0.0}, "cnn": {"lr": 0.02, "warmup": 0.5}}


def lr_multiplier(step, batches_per_epoch, epochs, warmup, schedule):
    """fasttrain's schedule at the start of optimizer step `step` (0-based): a linear ramp
    min(1, elapsed / warmup) times cosine 0.5 (1 + cos(pi * elapsed / epochs)), elapsed in epochs."""
    elapsed = step / batches_per_epoch
    ramp = min(1.0, elapsed / warmup) if warmup > 0 else 1.0
    if schedule == "constant":
        return ramp
    f = min(max(elapsed / epochs, 0.0), 1.0)
    return ramp * 0.5 * (1.0 + math.cos(math.pi * f))


def openblas_set_threads(n):
    """Debian's torch calls OpenBLAS (libopenblas0-pthread) through the generic libblas.so.3, and
    OpenBLAS's own pthread pool ignores torch.set_num_threads: without this, --threads 1 still
    runs every GEMM on all cores. Sets the pool of each OpenBLAS library mapped into this process;
    returns the thread count OpenBLAS reports afterwards, or None when no OpenBLAS is loaded
    (PyPI's torch uses MKL, which torch.set_num_threads does control)."""
    import ctypes

    paths = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and "openblas" in parts[5] and ".so" in parts[5]:
                paths.add(parts[5])
    got = None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            setter, getter = lib.openblas_set_num_threads, lib.openblas_get_num_threads
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], None
        getter.argtypes, getter.restype = [], ctypes.c_int
        setter(n)
        got = getter()
    return got


def build_model(name, init="he"):
    if name == "mlp":
        model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(),
            nn.Linear(128, 10))
    elif name == "cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 1024), nn.ReLU(),
            nn.Linear(1024, 10))
    else:
        raise ValueError(f"unknown model {name!r}")
    if init == "torch":  # PyTorch's own defaults, for diagnosis only
        return model
    return he_uniform_(model)


def he_uniform_(model):
    """fasttrain's default: He uniform, U(-a, a) with a = sqrt(6 / fan_in), zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight, a=0.0, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


@torch.no_grad()
def evaluate(model, x, y, chunk=1000):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], chunk):
        correct += int((model(x[i:i + chunk]).argmax(dim=1) == y[i:i + chunk]).sum())
    model.train()
    return correct / x.shape[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("mlp", "cnn"), required=True)
    p.add_argument("--epochs", type=float, default=10.0, help="training epochs, may be fractional")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--data", default=DEFAULT_DIR, help="Fashion-MNIST directory")
    p.add_argument("--eval", action="store_true", help="evaluate on the test set after training")
    p.add_argument("--lr", type=float, default=None,
                   help="base learning rate (default: fasttrain's example: mlp 0.05, cnn 0.02)")
    p.add_argument("--warmup", type=float, default=None,
                   help="epochs of linear LR warmup before the cosine decay, fasttrain's ramp "
                        "(the first step has rate 0) (default: fasttrain's example: mlp 0, cnn 0.5)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-5,
                   help="decoupled decay as fasttrain's SGD: p -= schedule * wd * p each step "
                        "(default 5e-5: what fasttrain's examples use; 0 turns it off)")
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    p.add_argument("--init", choices=("he", "torch"), default="he",
                   help="he: fasttrain's He-uniform weights and zero biases (default); "
                        "torch: PyTorch's default initialisation")
    args = p.parse_args(argv)
    if args.epochs <= 0 or args.batch < 1 or args.threads < 1:
        p.error("--epochs must be > 0, --batch and --threads >= 1")
    if args.lr is None:
        args.lr = EXAMPLE_DEFAULTS[args.model]["lr"]
    if args.warmup is None:
        args.warmup = EXAMPLE_DEFAULTS[args.model]["warmup"]
    if args.lr <= 0 or args.warmup < 0 or not 0 <= args.weight_decay < 1:
        p.error("--lr must be > 0, --warmup >= 0, --weight-decay in [0, 1)")

    # Threads first, before any parallel work (set_num_interop_threads fails afterwards).
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError as e:  # already set, or the build does not allow it
        print(f"torch_train: set_num_interop_threads(1) not applied: {e}", file=sys.stderr)
    torch.manual_seed(args.seed)
    torch.mm(torch.ones(2, 2), torch.ones(2, 2))  # loads the BLAS library if it is lazy
    openblas_threads = openblas_set_threads(args.threads)

    d = load(args.data)
    train_x, train_y, test_x, test_y = d["train_x"], d["train_y"], d["test_x"], d["test_y"]
    n = train_x.shape[0]
    model = build_model(args.model, args.init)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          nesterov=True, weight_decay=0.0)
    params = [q for q in model.parameters()]
    if hasattr(torch, "_foreach_mul_"):  # one call for every parameter (torch >= 1.7)
        def decay_(ps, factor):
            torch._foreach_mul_(ps, factor)
    else:
        def decay_(ps, factor):
            for q in ps:
                q.mul_(factor)

    batches_per_epoch = (n + args.batch - 1) // args.batch
    total_steps = int(math.ceil(args.epochs * batches_per_epoch))  # as fasttrain's Time::total_batches
    gen = torch.Generator()
    gen.manual_seed(args.seed)

    model.train()
    step = 0
    samples = 0
    loss_sum, loss_count = 0.0, 0
    perm = None
    t0 = time.perf_counter()
    while step < total_steps:
        b = step % batches_per_epoch
        if b == 0:
            perm = torch.randperm(n, generator=gen)
            loss_sum, loss_count = 0.0, 0
        idx = perm[b * args.batch:(b + 1) * args.batch]
        xb = train_x.index_select(0, idx)
        yb = train_y.index_select(0, idx)
        mult = lr_multiplier(step, batches_per_epoch, args.epochs, args.warmup, args.schedule)
        for g in opt.param_groups:
            g["lr"] = args.lr * mult
        if args.weight_decay > 0:  # decoupled, before the step: p <- p - m wd p - lr m d
            with torch.no_grad():
                decay_(params, 1.0 - mult * args.weight_decay)
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item()
        loss_count += 1
        samples += idx.shape[0]
        step += 1
    train_seconds = time.perf_counter() - t0

    acc = evaluate(model, test_x, test_y) if args.eval else None
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result = {
        "name": f"torch_{args.model}",
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "openblas_threads": openblas_threads,
        "batch": args.batch,
        "epochs": args.epochs,
        "seed": args.seed,
        "steps": step,
        "samples": samples,
        "samples_per_second": samples / train_seconds if train_seconds > 0 else 0.0,
        "train_seconds": train_seconds,
        "test_accuracy": acc,
        "final_train_loss": loss_sum / loss_count if loss_count else None,
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "schedule": args.schedule,
        "init": args.init,
        "peak_rss_mb": peak_rss_mb,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
