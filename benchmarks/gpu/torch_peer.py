#!/usr/bin/env python3
"""The PyTorch peer of bench_backends on a GPU (benchmarks/gpu/run.sh).

Trains the same MLP, CNN and ResNet as fasttrain's examples (examples/models.hpp) on the same
GPU, the way bench_backends trains them on gpu::thrust:
  - the whole training set on the GPU, each batch gathered there from a fresh permutation;
  - SGD, lr 0.02, momentum 0.9, Nesterov; softmax cross-entropy;
  - the loss read back every step (loss.item()), as fasttrain's Trainer reads it to catch a
    diverged run;
  - --warmup untimed steps, then --steps timed steps, timed from the first to the last
    synchronisation; evaluation excluded.
Precision: fp32 with TF32 off for matrix products and convolutions (--precision fp32), or
autocast to bf16 (--precision bf16, PyTorch's AMP).

Prints one JSON line per (model, batch): bench, backend, model, batch, steps, precision,
samples_per_second, final_train_loss.

    python3 torch_peer.py --data DIR --models mlp,cnn,resnet --batches 128,1024 --precision fp32

With --to-accuracy T: the ResNet example's whole recipe instead, as bench_gpu_accuracy runs it
(batch 128, lr 0.05 with 0.5 epochs of fasttrain's linear warmup times a cosine over --epochs,
Nesterov momentum 0.9, decoupled weight decay 5e-5 as fasttrain's SGD applies it, He-uniform
weights and zero biases, seed 1), the test set evaluated every half epoch outside the timed
training; one JSON line: final test accuracy, seconds and epochs to T.

    python3 torch_peer.py --data DIR --to-accuracy 0.91 --epochs 10 --precision bf16
"""

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peer"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fashion_mnist import DEFAULT_DIR, load_numpy  # noqa: E402
from torch_train import evaluate, he_uniform_  # noqa: E402


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Linear(1024, 10))


class Block(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN added to the input (or to a 1x1 stride-2 projection)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1), nn.BatchNorm2d(c_out))
        self.short = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, 0), nn.BatchNorm2d(c_out))
                      if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        return F.relu(self.body(x) + self.short(x))


def resnet():
    return nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(),
                         Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


MODELS = {"mlp": mlp, "cnn": cnn, "resnet": resnet}


def to_accuracy(target, epochs, precision, d, batch=128, lr=0.05, warmup=0.5, wd=5e-5):
    torch.manual_seed(1)
    x, y = torch.as_tensor(d["train_x"]).cuda(), torch.as_tensor(d["train_y"]).cuda()
    tx, ty = torch.as_tensor(d["test_x"]).cuda(), torch.as_tensor(d["test_y"]).cuda()
    model = he_uniform_(resnet()).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    params = list(model.parameters())
    n = x.shape[0]
    per_epoch = (n + batch - 1) // batch
    total = math.ceil(epochs * per_epoch)
    half = per_epoch / 2
    seconds, hit, step, next_eval = 0.0, None, 0, half
    while step < total:
        if step % per_epoch == 0:
            perm = torch.randperm(n, device=x.device)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        while step < total and step < next_eval:
            b = step % per_epoch
            idx = perm[b * batch:(b + 1) * batch]
            elapsed = step / per_epoch
            mult = min(1.0, elapsed / warmup) * 0.5 * (1 + math.cos(math.pi * min(elapsed / epochs, 1.0)))
            for g in opt.param_groups:
                g["lr"] = lr * mult
            with torch.no_grad():
                torch._foreach_mul_(params, 1.0 - mult * wd)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            step += 1
        torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        next_eval = min(next_eval + half, total) if next_eval < total else total + 1
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            acc = evaluate(model, tx, ty)
        if hit is None and acc >= target:
            hit = (seconds, step / per_epoch)
    return {"bench": "torch_accuracy", "backend": f"torch {torch.__version__} cuda {precision}", "model": "resnet",
            "precision": precision, "batch": batch, "epochs": epochs, "target": target,
            "test_accuracy": round(acc, 4), "seconds_to_target": round(hit[0], 2) if hit else None,
            "epochs_to_target": round(hit[1], 2) if hit else None, "train_seconds": round(seconds, 2)}


def run(model_name, batch, steps, warmup, precision, x_all, y_all):
    torch.manual_seed(1)
    dev = x_all.device
    model = MODELS[model_name]().to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True)
    n = x_all.shape[0]
    perm = torch.randperm(n, device=dev)
    pos = 0

    def step():
        nonlocal perm, pos
        if pos + batch > n:
            perm = torch.randperm(n, device=dev)
            pos = 0
        idx = perm[pos:pos + batch]
        pos += batch
        x = x_all.index_select(0, idx)
        y = y_all.index_select(0, idx)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss = float("nan")
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return steps * batch / seconds, loss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DIR)
    ap.add_argument("--models", default="mlp,cnn,resnet")
    ap.add_argument("--batches", default="128,1024")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--samples", type=int, default=102400, help="MLP samples timed per run (CNN, ResNet: 3/20)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--to-accuracy", type=float, default=0.0, help="the ResNet recipe to this test accuracy")
    ap.add_argument("--epochs", type=float, default=10.0, help="with --to-accuracy: the budget")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch_peer.py: no CUDA device visible to PyTorch")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    d = load_numpy(args.data)
    if args.to_accuracy > 0:
        print(json.dumps(to_accuracy(args.to_accuracy, args.epochs, args.precision, d)), flush=True)
        return
    x_all = torch.as_tensor(d["train_x"]).cuda()
    y_all = torch.as_tensor(d["train_y"]).cuda()
    for model_name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            samples = args.samples if model_name == "mlp" else args.samples * 3 // 20
            steps = max(samples // batch, 10)
            sps, loss = run(model_name, batch, steps, args.warmup, args.precision, x_all, y_all)
            print(json.dumps({"bench": "torch_peer", "backend": f"torch {torch.__version__} cuda {args.precision}",
                              "model": model_name, "batch": batch, "steps": steps, "precision": args.precision,
                              "samples_per_second": round(sps, 1), "final_train_loss": round(loss, 6)}), flush=True)


if __name__ == "__main__":
    main()
