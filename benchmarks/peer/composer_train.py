#!/usr/bin/env python3
"""The MosaicML Composer peer: time to a target test accuracy on Fashion-MNIST (benchmarks/peer/).

Trains fasttrain's example ResNet (examples/models.hpp, examples::ResNet) with composer.Trainer on
CPU, on the same data and hyperparameters as fasttrain's examples/fashion_mnist_resnet, either as
a plain baseline or with Composer's algorithms that match fasttrain's methods, and reports how
long training took to reach the target test accuracy (91% by default).

  network: stem conv3x3(1->16, pad 1)-BN-ReLU
           BasicBlock 16:  conv3x3-BN-ReLU-conv3x3-BN, + input, ReLU                    (28x28)
           DownBlock 16:   conv3x3 s2 (16->32)-BN-ReLU-conv3x3-BN, + conv1x1 s2-BN, ReLU (14x14)
           DownBlock 32:   the same, 32->64                                              (7x7)
           global average pool, Linear(64, 10)
           convolutions with bias, He-uniform weights, zero biases; BN as PyTorch's defaults.
  training: composer.optim.DecoupledSGDW (momentum 0.9, Nesterov, lr 0.05, weight decay 5e-5
           applied as p *= 1 - (lr_t / lr_0) wd before the step: exactly fasttrain's SGD and
           torch_train.py's decay); the rate lr 0.05 x min(1, t / 0.5 ep) x 0.5 (1 + cos(pi t /
           budget)), evaluated per step at the step's index as fasttrain does (set by a callback
           at BATCH_START, see LRSchedule below); batch 128 (last batch of an epoch the smaller
           remainder), a fresh torch.randperm order each epoch, softmax cross-entropy
           (ComposerClassifier's soft_cross_entropy, which also takes LabelSmoothing's soft targets).
  data:    fashion_mnist.load (Debian's gzip IDX files, normalised as fasttrain does), whole data
           set as in-memory tensors; a torch DataLoader (num_workers=0, batch_size=None) over a
           BatchSampler(RandomSampler) whose batches are gathered with one index_select, as
           torch_train.py does; no per-sample collate.
  eval:    the 10k test set after every epoch (Evaluator eval_interval='1ep'), batch 1000,
           MulticlassAccuracy; with EMA, on the averaged weights (Composer swaps them in).
           No training metrics: ComposerClassifier's default (MulticlassAccuracy, computed by
           Composer on every training batch) is replaced by an empty MetricCollection, since the
           other peers compute none; --train-metrics restores it.
  stop:    at the end of the first epoch whose test accuracy reaches --target
           (State.stop_training()); --epochs is the budget the schedule (and ProgressiveResizing,
           and EMA's start) is laid out over, so stopping early leaves it part-decayed, as
           fasttrain's fit() with a target does.

Recipes (--recipe):
  baseline  no algorithms.
  methods   the algorithms of --algorithms (default: label_smoothing,blurpool,ema,
            progressive_resizing): LabelSmoothing(0.1), BlurPool() (Composer defaults: blur
            before the stride-2 convolutions with >= 16 input channels, here the two 3x3 and the
            two 1x1 shortcut convolutions of the DownBlocks), EMA(half_life='200ba',
            update_interval='1ba') (fasttrain's medium recipe's half-life), ProgressiveResizing()
            (Composer defaults: mode 'resize', initial_scale 0.5, delay_fraction 0.5,
            finetune_fraction 0.2, size_increment 4). Also available: mixup (MixUp(alpha=0.2)),
            cutmix, cutout: not in the default set (see composer_README.md).

Timing (all time.perf_counter, measured by the TimeToTarget callback, not Composer's logger):
  train_seconds_per_epoch  EPOCH_START -> EPOCH_END of each epoch: the data loader, Composer's
                           per-batch engine and algorithm events, forward, loss, backward,
                           optimizer and EMA update; Composer runs evaluation after EPOCH_END,
                           so it is outside.
  eval_seconds_per_epoch   EVAL_BEFORE_ALL -> EVAL_AFTER_ALL (includes EMA's weight swap).
  seconds_to_target        sum of train_seconds_per_epoch up to and including the target epoch.
  composer_total_wct_s     Composer's own State.timestamp.total_wct at that epoch (it too pauses
                           during evaluation), for comparison.
  setup_seconds            Trainer construction (Event.INIT: BlurPool's surgery etc.);
  fit_seconds              the whole Trainer.fit() call (train + eval + Composer's overhead).

    python3 composer_train.py --recipe baseline --epochs 10 --seed 1 --threads 2
    python3 composer_train.py --recipe methods  --epochs 10 --seed 1 --threads 2

Ends its output with ONE JSON line (library "composer", versions, recipe, algorithms, seed,
threads, epochs_to_target, seconds_to_target, accuracy_per_epoch, train_seconds_per_epoch,
eval_seconds_per_epoch, eval_seconds, ...).
"""

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from fashion_mnist import DEFAULT_DIR, load  # noqa: E402
from torch_train import lr_multiplier, openblas_set_threads  # noqa: E402

ALGORITHMS = ("label_smoothing", "blurpool", "ema", "progressive_resizing", "mixup", "cutmix",
              "cutout")
DEFAULT_ALGORITHMS = "label_smoothing,blurpool,ema,progressive_resizing"


# ----------------------------------------------------------------------------- the network
def conv_bn(cin, cout, k, stride, pad):
    return [nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=pad, bias=True),
            nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """fasttrain's BasicBlock<C>: conv3x3-BN-ReLU-conv3x3-BN added to the input (the ReLU after
    the addition is the Sequential's next layer in fasttrain, here the end of forward)."""

    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c, c, 3, 1, 1), nn.ReLU(), *conv_bn(c, c, 3, 1, 1))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + x)


class DownBlock(nn.Module):
    """fasttrain's DownBlock<C>: stride 2, C -> 2C, projection shortcut conv1x1 s2 + BN."""

    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c, 2 * c, 3, 2, 1), nn.ReLU(),
                                  *conv_bn(2 * c, 2 * c, 3, 1, 1))
        self.shortcut = nn.Sequential(*conv_bn(c, 2 * c, 1, 2, 0))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def build_resnet():
    model = nn.Sequential(
        *conv_bn(1, 16, 3, 1, 1), nn.ReLU(),   # stem, 28x28
        BasicBlock(16),                        # stage 1, 28x28
        DownBlock(16),                         # stage 2, 14x14
        DownBlock(32),                         # stage 3, 7x7
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 10))
    # fasttrain's default: He uniform U(-a, a), a = sqrt(6 / fan_in), zero biases (torch_train.py).
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight, a=0.0, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


# ----------------------------------------------------------------------------- data
class BatchTensors(torch.utils.data.Dataset):
    """In-memory (x, y); indexed with a list of indices (a whole batch from a BatchSampler),
    returns the batch gathered with one index_select, as torch_train.py does."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, idx):
        i = torch.as_tensor(idx, dtype=torch.long)
        return self.x.index_select(0, i), self.y.index_select(0, i)


def make_loader(x, y, batch, shuffle, generator=None):
    ds = BatchTensors(x, y)
    base = (torch.utils.data.RandomSampler(ds, generator=generator) if shuffle
            else torch.utils.data.SequentialSampler(ds))
    sampler = torch.utils.data.BatchSampler(base, batch_size=batch, drop_last=False)
    # batch_size=None: the loader passes the sampler's index lists straight to __getitem__.
    return torch.utils.data.DataLoader(ds, batch_size=None, sampler=sampler, num_workers=0)


# ----------------------------------------------------------------------------- callbacks
def make_callbacks(Callback):
    class LRSchedule(Callback):
        """fasttrain's schedule, set at BATCH_START from the step's own index. (A functional
        ComposerScheduler would be compiled into a LambdaLR that Composer steps *before* it
        advances state.timestamp, so step k would run with the rate of step k - 1.)
        DecoupledSGDW scales its decay by lr / initial_lr, i.e. by this multiplier."""

        def __init__(self, base_lr, batches_per_epoch, epochs, warmup):
            self.base_lr, self.bpe, self.epochs, self.warmup = base_lr, batches_per_epoch, epochs, warmup

        def batch_start(self, state, logger):
            mult = lr_multiplier(int(state.timestamp.batch), self.bpe, self.epochs, self.warmup,
                                 "cosine")
            for opt in state.optimizers:
                for g in opt.param_groups:
                    g["lr"] = self.base_lr * mult

    class TimeToTarget(Callback):
        """Times each epoch's training (EPOCH_START -> EPOCH_END) and each evaluation
        (EVAL_BEFORE_ALL -> EVAL_AFTER_ALL) with time.perf_counter, reads the test accuracy
        after each evaluation, and stops training once it reaches the target."""

        def __init__(self, target, metric="MulticlassAccuracy"):
            self.target, self.metric = target, metric
            self.train_s, self.eval_s, self.acc, self.wct = [], [], [], []
            self.epochs_to_target = None
            self._t = None

        def epoch_start(self, state, logger):
            self._t = time.perf_counter()

        def epoch_end(self, state, logger):
            self.train_s.append(time.perf_counter() - self._t)
            self.wct.append(state.timestamp.total_wct.total_seconds())

        def eval_before_all(self, state, logger):
            self._te = time.perf_counter()

        def eval_after_all(self, state, logger):
            self.eval_s.append(time.perf_counter() - self._te)
            acc = float(state.eval_metrics["eval"][self.metric].compute())
            self.acc.append(acc)
            if self.epochs_to_target is None and acc >= self.target:
                self.epochs_to_target = len(self.train_s)
                state.stop_training()

    return LRSchedule, TimeToTarget


def build_algorithms(names, half_life):
    from composer import algorithms as A

    made = []
    for name in names:
        if name == "label_smoothing":
            made.append(A.LabelSmoothing(smoothing=0.1))
        elif name == "blurpool":
            made.append(A.BlurPool())
        elif name == "ema":
            made.append(A.EMA(half_life=half_life, update_interval="1ba"))
        elif name == "progressive_resizing":
            made.append(A.ProgressiveResizing())
        elif name == "mixup":
            made.append(A.MixUp(alpha=0.2))
        elif name == "cutmix":
            made.append(A.CutMix(alpha=1.0))
        elif name == "cutout":
            made.append(A.CutOut(num_holes=1, length=0.5))
        else:
            raise ValueError(name)
    return made


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", choices=("baseline", "methods"), required=True)
    p.add_argument("--algorithms", default=DEFAULT_ALGORITHMS,
                   help="comma list for --recipe methods, from: " + ",".join(ALGORITHMS) +
                        f" (default {DEFAULT_ALGORITHMS})")
    p.add_argument("--epochs", type=int, default=10,
                   help="budget in epochs: the schedule decays to 0 over it (default 10, "
                        "fasttrain's resnet_epochs)")
    p.add_argument("--target", type=float, default=0.91, help="test accuracy to stop at")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.5, help="epochs of linear warmup")
    p.add_argument("--weight-decay", type=float, default=5e-5)
    p.add_argument("--ema-half-life", default="200ba")
    p.add_argument("--train-metrics", action="store_true",
                   help="keep ComposerClassifier's default training accuracy, which Composer "
                        "computes on every batch (off by default: the other peers compute none)")
    p.add_argument("--data", default=DEFAULT_DIR, help="Fashion-MNIST directory")
    p.add_argument("--limit-train", type=int, default=0,
                   help="SMOKE TESTS ONLY: train on the first N training images")
    p.add_argument("--limit-test", type=int, default=0,
                   help="SMOKE TESTS ONLY: evaluate on the first N test images")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch < 1 or args.threads < 1:
        p.error("--epochs, --batch and --threads must be >= 1")
    names = [] if args.recipe == "baseline" else [s for s in args.algorithms.split(",") if s]
    for n in names:
        if n not in ALGORITHMS:
            p.error(f"unknown algorithm {n!r}; known: {', '.join(ALGORITHMS)}")

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError as e:
        print(f"composer_train: set_num_interop_threads(1) not applied: {e}", file=sys.stderr)
    torch.mm(torch.ones(2, 2), torch.ones(2, 2))
    openblas_threads = openblas_set_threads(args.threads)

    import composer
    from composer import Trainer
    from composer.core import Callback, Evaluator
    from composer.models import ComposerClassifier
    from composer.optim import DecoupledSGDW
    from composer.utils import reproducibility
    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy

    LRSchedule, TimeToTarget = make_callbacks(Callback)
    reproducibility.seed_all(args.seed)

    d = load(args.data)
    train_x, train_y, test_x, test_y = d["train_x"], d["train_y"], d["test_x"], d["test_y"]
    if args.limit_train:
        train_x, train_y = train_x[:args.limit_train], train_y[:args.limit_train]
    if args.limit_test:
        test_x, test_y = test_x[:args.limit_test], test_y[:args.limit_test]
    n = train_x.shape[0]
    gen = torch.Generator()
    gen.manual_seed(args.seed)
    train_dl = make_loader(train_x, train_y, args.batch, True, gen)
    test_dl = make_loader(test_x, test_y, 1000, False)
    batches_per_epoch = len(train_dl)

    net = build_resnet()
    model = ComposerClassifier(
        net, num_classes=10,
        train_metrics=(MulticlassAccuracy(num_classes=10, average="micro") if args.train_metrics
                       else MetricCollection([])),
        val_metrics=MulticlassAccuracy(num_classes=10, average="micro"))
    opt = DecoupledSGDW(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                        weight_decay=args.weight_decay)
    algorithms = build_algorithms(names, args.ema_half_life)
    timer = TimeToTarget(args.target)
    evaluator = Evaluator(label="eval", dataloader=test_dl, metric_names=["MulticlassAccuracy"],
                          device_eval_microbatch_size=1000)

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        trainer = Trainer(
            model=model,
            train_dataloader=train_dl,
            eval_dataloader=evaluator,
            eval_interval="1ep",
            max_duration=f"{args.epochs}ep",
            optimizers=opt,
            schedulers=[],
            algorithms=algorithms,
            callbacks=[LRSchedule(args.lr, batches_per_epoch, args.epochs, args.warmup), timer],
            device="cpu",
            precision="fp32",
            device_train_microbatch_size=args.batch,
            seed=args.seed,
            progress_bar=False,
            log_to_console=False,
            loggers=[],
        )
        setup_seconds = time.perf_counter() - t0
        # Surgery (BlurPool) must have re-pointed the optimizer at the new parameters.
        model_params = {id(q) for q in trainer.state.model.parameters()}
        opt_params = {id(q) for g in opt.param_groups for q in g["params"]}
        if model_params != opt_params:
            raise RuntimeError("optimizer parameters differ from the model's after Event.INIT")
        t1 = time.perf_counter()
        trainer.fit()
        fit_seconds = time.perf_counter() - t1
    warns = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}"
                    for w in caught})

    e = timer.epochs_to_target
    epochs_run = len(timer.train_s)
    samples_run = int(trainer.state.timestamp.sample)
    train_total = sum(timer.train_s)
    result = {
        "library": "composer",
        "composer_version": composer.__version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "recipe": args.recipe,
        "algorithms": [type(a).__name__ for a in algorithms],
        "seed": args.seed,
        "threads": args.threads,
        "torch_num_threads": torch.get_num_threads(),
        "openblas_threads": openblas_threads,
        "epochs": args.epochs,
        "target": args.target,
        "epochs_to_target": e,
        "seconds_to_target": sum(timer.train_s[:e]) if e else None,
        "composer_total_wct_s": timer.wct[e - 1] if e else (timer.wct[-1] if timer.wct else None),
        "accuracy_per_epoch": timer.acc,
        "train_seconds_per_epoch": timer.train_s,
        "eval_seconds_per_epoch": timer.eval_s,
        "eval_seconds": sum(timer.eval_s),
        "epochs_run": epochs_run,
        "samples": samples_run,
        "samples_per_second": samples_run / train_total if train_total > 0 else None,
        "setup_seconds": setup_seconds,
        "fit_seconds": fit_seconds,
        "composer_overhead_seconds": fit_seconds - train_total - sum(timer.eval_s),
        "batch": args.batch,
        "batches_per_epoch": batches_per_epoch,
        "train_samples": n,
        "test_samples": int(test_x.shape[0]),
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "train_metrics": args.train_metrics,
        "ema_half_life": args.ema_half_life if "ema" in names else None,
        "parameters": sum(q.numel() for q in trainer.state.model.parameters()),
        "warnings": warns,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
