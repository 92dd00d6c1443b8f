#!/usr/bin/env python3
"""fasttrain vs PyTorch: training speed on identical models, data and hyperparameters.

For each model (mlp, cnn) runs, one after the other, fasttrain's example binary
(<build-dir>/examples/fashion_mnist_<model>) and benchmarks/peer/torch_train.py under the chosen
Python interpreter, with the same epochs, seed, threads and batch size; measures each side's peak
resident set size with /usr/bin/time (or a small wrapper when it is missing); prints a table and
ends with ONE JSON line of every figure.

    python3 benchmarks/peer/compare.py --python /opt/torch-venv/bin/python
    python3 benchmarks/peer/compare.py --python /usr/bin/python3 --models mlp --rounds 3

Both sides get the same hyperparameters: the base rate and warmup are read from the fasttrain
binary's --help defaults (or --lr-mlp/--warmup-cnn/... given to both), and torch gets the
examples' built-in decoupled weight decay 5e-5 (passed to fasttrain as well once its binary has a
--weight-decay flag). Pass --weight-decay 0 to turn it off on the torch side only (noted).

samples/s is each side's own figure: training samples per second of the training loop,
evaluation excluded. The environment is passed to both sides as it is; the OpenBLAS / OpenMP /
MKL variables that change a peer's speed are printed (and recorded) first. The CPUs' load from
other processes is sampled just before every run: on a shared machine, a 2-thread run next to a
busy core can be several times slower, and the table marks such runs.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TORCH_TRAIN = os.path.join(HERE, "torch_train.py")
ENV_PREFIXES = ("OPENBLAS_", "OMP_", "GOMP_", "KMP_", "MKL_", "DNNL_", "ONEDNN_", "ATEN_", "TORCH_")
BUSY_WARN = 0.15  # fraction of all CPUs busy with other processes before a run

# Fallback when /usr/bin/time is missing: a fresh interpreter whose only child is the command,
# so RUSAGE_CHILDREN's ru_maxrss is that command's own peak.
_WRAPPER = r"""
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
"""


EXAMPLE_DEFAULTS = {"mlp": {"lr": 0.05, "warmup": 0.0}, "cnn": {"lr": 0.02, "warmup": 0.5}}
EXAMPLE_WEIGHT_DECAY = 5e-5  # hard-coded in examples/example_main.hpp (no flag)


def binary_flags(binary):
    """{flag: default string} from the binary's --help ("  --lr   base learning rate (default: 0.02)")."""
    p = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    flags = {}
    for line in p.stdout.splitlines():
        m = re.match(r"\s+--([\w-]+)\s.*\(default: ([^)]*)\)\s*$", line)
        if m:
            flags[m.group(1)] = m.group(2)
    return flags


def cpu_busy_fraction(seconds=0.5):
    """Fraction of all CPUs busy (user+system+...) over `seconds`, from /proc/stat; None if
    unreadable. This process sleeps meanwhile, so it measures the other processes."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return idle, sum(v[:8])
    try:
        i0, t0 = read()
        time.sleep(seconds)
        i1, t1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else None


def last_json_line(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def run_measured(cmd):
    """Runs cmd; returns (returncode, stdout, stderr, peak_rss_mb or None, wall seconds)."""
    fd, rss_file = tempfile.mkstemp(prefix="peer_rss_")
    os.close(fd)
    try:
        if os.access("/usr/bin/time", os.X_OK):
            full = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd
        else:
            full = [sys.executable, "-c", _WRAPPER, rss_file] + cmd
        t0 = time.perf_counter()
        p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        rss = None
        try:
            with open(rss_file) as f:
                lines = [x for x in f.read().split() if x.strip().isdigit()]
            rss = int(lines[-1]) / 1024.0 if lines else None  # KiB -> MiB
        except OSError:
            pass
        return p.returncode, p.stdout, p.stderr, rss, wall
    finally:
        os.unlink(rss_file)


def one_run(side, cmd):
    busy = cpu_busy_fraction()
    rc, out, err, rss, wall = run_measured(cmd)
    res = last_json_line(out) if rc == 0 else None
    rec = {"cmd": cmd, "rc": rc, "wall_seconds": round(wall, 3), "peak_rss_mb": rss,
           "other_cpu_busy": None if busy is None else round(busy, 3)}
    if res is None:
        tail = "\n".join((err or out).strip().splitlines()[-8:])
        rec["error"] = f"{side} failed (exit {rc}): {tail}"
        print(f"  {side}: FAILED (exit {rc})\n    " + tail.replace("\n", "\n    "), file=sys.stderr)
        return rec
    rec.update({k: res.get(k) for k in ("samples_per_second", "train_seconds", "test_accuracy",
                                          "steps", "final_train_loss")})
    rec["result"] = res
    flag = "  (CPUs busy before the run: the figure is unreliable)" \
        if busy is not None and busy > BUSY_WARN else ""
    print(f"  {side:9s} {res.get('samples_per_second', 0):>12,.0f} samples/s  "
          f"{res.get('train_seconds', 0):8.3f} s  acc {fmt(res.get('test_accuracy'), '.4f')}  "
          f"rss {fmt(rss, '.0f')} MB  other load {fmt(busy and 100 * busy, '.0f')}%{flag}",
          file=sys.stderr)
    return rec


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def summarise(runs):
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"ok": False, "runs": runs}
    med = lambda k: statistics.median(r[k] for r in ok if r.get(k) is not None) \
        if any(r.get(k) is not None for r in ok) else None  # noqa: E731
    return {"ok": True, "samples_per_second": med("samples_per_second"),
            "train_seconds": med("train_seconds"), "test_accuracy": med("test_accuracy"),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in ok if r["peak_rss_mb"] is not None),
                               default=None),
            "max_other_cpu_busy": max((r["other_cpu_busy"] for r in ok
                                       if r["other_cpu_busy"] is not None), default=None),
            "runs": runs}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--python", default=sys.executable, help="interpreter that has torch")
    p.add_argument("--epochs-mlp", type=float, default=2.0)
    p.add_argument("--epochs-cnn", type=float, default=0.25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--build-dir", default="build/release",
                   help="fasttrain build directory; relative paths are tried from the current "
                        "directory, then from the repository root")
    p.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    for m in ("mlp", "cnn"):
        p.add_argument(f"--lr-{m}", type=float, default=None,
                       help=f"base learning rate for the {m}, given to both sides "
                            "(None: the fasttrain binary's own default, read from its --help)")
        p.add_argument(f"--warmup-{m}", type=float, default=None,
                       help=f"epochs of linear LR warmup for the {m}, given to both sides "
                            "(None: the fasttrain binary's own default)")
    p.add_argument("--weight-decay", type=float, default=EXAMPLE_WEIGHT_DECAY,
                   help="decoupled weight decay; the fasttrain examples hard-code 5e-5 with no flag, "
                        "so it is given to fasttrain only when its binary has --weight-decay")
    p.add_argument("--rounds", type=int, default=1,
                   help="runs of each side per model, interleaved; the table shows medians")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in ("mlp", "cnn"):
            p.error(f"unknown model {m!r} (mlp, cnn)")
    if args.rounds < 1:
        p.error("--rounds must be >= 1")

    build = args.build_dir
    if not os.path.isabs(build) and not os.path.isdir(build):
        build = os.path.join(REPO, build)
    python = shutil.which(args.python) or args.python

    probe = subprocess.run(
        [python, "-c", "import torch, platform; print(torch.__version__, platform.python_version())"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if probe.returncode != 0:
        print(f"compare.py: {python} cannot import torch:\n{probe.stderr.strip()[-600:]}\n"
              "see benchmarks/peer/README.md for installing a peer", file=sys.stderr)
        return 2
    torch_version, py_version = probe.stdout.split()[-2:]

    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)}
    print(f"compare.py: fasttrain {build}, torch {torch_version} (python {py_version}: {python})",
          file=sys.stderr)
    print("environment passed as is: " +
          (", ".join(f"{k}={v}" for k, v in env.items()) or "no OPENBLAS_/OMP_/MKL_ variables set"),
          file=sys.stderr)
    if "OPENBLAS_CORETYPE" in env:
        print("  note: OPENBLAS_CORETYPE pins OpenBLAS's kernels (Debian's torch uses OpenBLAS; "
              "PyPI's uses MKL; fasttrain uses neither)", file=sys.stderr)

    common = ["--seed", str(args.seed), "--threads", str(args.threads), "--batch", str(args.batch),
              "--data", args.data]
    figures = {}
    for model in models:
        epochs = args.epochs_mlp if model == "mlp" else args.epochs_cnn
        binary = os.path.join(build, "examples", f"fashion_mnist_{model}")
        fig = {"epochs": epochs}
        figures[model] = fig
        print(f"\n{model}: {epochs:g} epochs, batch {args.batch}, {args.threads} threads, "
              f"seed {args.seed}", file=sys.stderr)
        if not os.access(binary, os.X_OK):
            fig["skipped"] = f"{binary} does not exist (not built yet?): skipped"
            print(f"  skipped: {binary} does not exist (not built yet?)", file=sys.stderr)
            continue
        flags = binary_flags(binary)
        hp, ft_extra, th_extra = {}, [], []
        for name in ("lr", "warmup"):
            given = getattr(args, f"{name}_{model}")
            if given is not None and name not in flags:
                print(f"  {binary} has no --{name}: cannot give it {given:g}", file=sys.stderr)
                return 2
            value = given if given is not None else (
                float(flags[name]) if name in flags else EXAMPLE_DEFAULTS[model][name])
            hp[name] = value
            th_extra += [f"--{name}", f"{value:g}"]
            if name in flags:
                ft_extra += [f"--{name}", f"{value:g}"]
        hp["weight_decay"] = args.weight_decay
        th_extra += ["--weight-decay", f"{args.weight_decay:g}"]
        if "weight-decay" in flags:
            ft_extra += ["--weight-decay", f"{args.weight_decay:g}"]
        else:
            hp["fasttrain_weight_decay"] = f"built in ({EXAMPLE_WEIGHT_DECAY:g})"
            if args.weight_decay != EXAMPLE_WEIGHT_DECAY:
                print(f"  note: {binary} has no --weight-decay; it keeps its built-in "
                      f"{EXAMPLE_WEIGHT_DECAY:g} while torch gets {args.weight_decay:g}", file=sys.stderr)
        fig["hyperparameters"] = hp
        print("  " + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in hp.items()), file=sys.stderr)
        ft_cmd = [binary, "--epochs", f"{epochs:g}"] + common + ft_extra
        th_cmd = [python, TORCH_TRAIN, "--model", model, "--epochs", f"{epochs:g}", "--eval"] \
            + common + th_extra
        ft_runs, th_runs = [], []
        for _ in range(args.rounds):
            ft_runs.append(one_run("fasttrain", ft_cmd))
            th_runs.append(one_run("torch", th_cmd))
        fig["fasttrain"], fig["torch"] = summarise(ft_runs), summarise(th_runs)
        a, b = fig["fasttrain"].get("samples_per_second"), fig["torch"].get("samples_per_second")
        fig["ratio"] = a / b if a and b else None

    # Table.
    head = ("model", "epochs", "fasttrain samples/s", "torch samples/s", "ratio ft/torch",
            "fasttrain RSS MB", "torch RSS MB", "fasttrain acc", "torch acc")
    rows = []
    for model, fig in figures.items():
        if "skipped" in fig:
            rows.append((model, f"{fig['epochs']:g}", "skipped: not built", "", "", "", "", "", ""))
            continue
        ft, th = fig["fasttrain"], fig["torch"]
        rows.append((model, f"{fig['epochs']:g}",
                     fmt(ft.get("samples_per_second"), ",.0f"), fmt(th.get("samples_per_second"), ",.0f"),
                     fmt(fig["ratio"], ".2f"), fmt(ft.get("peak_rss_mb"), ".0f"),
                     fmt(th.get("peak_rss_mb"), ".0f"), fmt(ft.get("test_accuracy"), ".4f"),
                     fmt(th.get("test_accuracy"), ".4f")))
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    print()
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    busy = [s.get("max_other_cpu_busy") for f in figures.values() if "skipped" not in f
            for s in (f["fasttrain"], f["torch"]) if s.get("max_other_cpu_busy") is not None]
    if busy and max(busy) > BUSY_WARN:
        print(f"\nwarning: other processes kept up to {100 * max(busy):.0f}% of the CPUs busy just "
              "before some runs; re-run on a quiet machine before quoting these figures.")
    print(f"torch {torch_version}, python {py_version}, {args.rounds} round(s), medians shown")

    # The machine's limit, in the same run: Eigen's GEMM peak and each CNN layer's GFLOP/s.
    layers = None
    bench = os.path.join(build, "benchmarks", "bench_layers")
    if "cnn" in figures and os.access(bench, os.X_OK):
        print("\nWhere fasttrain's CNN step goes, against the GEMM peak (bench_layers):", flush=True)
        proc = subprocess.run([bench, "--threads", str(args.threads), "--batch", str(args.batch)],
                              capture_output=True, text=True)
        print(proc.stdout.rstrip(), flush=True)
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        try:
            layers = json.loads(last)
        except ValueError:
            layers = {"ok": False, "rc": proc.returncode}

    failed = any(not f[s]["ok"] for f in figures.values() if "skipped" not in f
                 for s in ("fasttrain", "torch"))
    summary = {"name": "peer_compare", "torch_version": torch_version, "python": python,
               "python_version": py_version, "threads": args.threads, "batch": args.batch,
               "seed": args.seed, "rounds": args.rounds, "build_dir": build, "env": env,
               "models": figures, "bench_layers": layers, "ok": not failed}
    print(json.dumps(summary), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
