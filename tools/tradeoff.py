"""Which MobileNetV1 fits a latency budget on this machine, and what accuracy it gives up.

    python tools/tradeoff.py --budget-ms 3                       # the paper's 16 models, auto
    python tools/tradeoff.py --budget-ms 3 --backend onnxruntime --precision int8
    python tools/tradeoff.py --models 0.25:128,0.5:128 --backend pytorch   # a subset
    python tools/tradeoff.py --add 0.6:200,1.0:256               # the 16 plus your own
    python tools/tradeoff.py --task ssdlite320 --budget-ms 30     # the detector on each backbone
    python tools/tradeoff.py --from-json work_dirs/tradeoff/tradeoff_classify.json --budget-ms 2

Measures every alpha x resolution model with the chosen backend, precision, batch and threads
(tools/tradeoff_timing.py), joins the published ImageNet accuracy of each (TF-slim's
mobilenet_v1.md, source per row), prints the Pareto frontier (accuracy vs measured latency) and
the best model within --budget-ms with its config / get_model line and weights entry, and writes
<output>/tradeoff_<task>.json and .png (accuracy vs latency with the frontier; beside it, the
published accuracy vs mult-adds of the paper's 16 models). --from-json re-reads a measurement
and only chooses again (no timing). The detector task has no published accuracy: it ranks by
mult-adds and says so. Exit status 2: bad input, or no model fits the budget (the message names
the fastest model and its time; the files are still written).
"""
import argparse
import dataclasses
import json
import os
import os.path as osp
import sys
import time

import numpy as np
import torch
from plots import pyplot, save_png
from tradeoff_timing import BACKEND_CHOICES, Timing, check_options, measure

from mnet_backbone import tradeoff as t
from mnet_backbone.cost import count
from mnet_backbone.deploy.backends import PRECISIONS, machine_fingerprint
from mnet_backbone.deploy.detector_pipeline import check_output_dir
from mnet_backbone.files import atomic_write
from mnet_backbone.published import SOURCES, accuracy_table

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-ms", type=float, help="latency budget per call (one batch), ms")
    p.add_argument("--backend", default="auto", metavar="|".join(BACKEND_CHOICES),
                   help="where to run the models (default: auto, the faster runtime per model)")
    p.add_argument("--precision", default="fp32", metavar="|".join(PRECISIONS))
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--task", default="classify", metavar="|".join(t.TASKS),
                   help="classify: the ImageNet classifier; ssdlite320: the SSDLite320 "
                        "detector built on each backbone (resolution = detector input)")
    p.add_argument("--models", action="append", metavar="A:R[,A:R...]",
                   help="measure only these alpha:resolution models (default: the paper's 16)")
    p.add_argument("--add", action="append", metavar="A:R[,A:R...]",
                   help="measure these as well as the default 16")
    p.add_argument("--threads", type=int, default=2, help="threads per model (default 2)")
    p.add_argument("--rounds", type=int, default=20, help="timing rounds (default 20)")
    p.add_argument("--calls", type=int, default=3, help="timed calls per model and round")
    p.add_argument("--accuracy-source", default="tfslim_2017", metavar="|".join(SOURCES),
                   help="published accuracy to rank by (default tfslim_2017)")
    p.add_argument("--output", "--out", dest="output",
                   default=osp.join(ROOT, "work_dirs", "tradeoff"),
                   help="output folder (default work_dirs/tradeoff)")
    p.add_argument("--no-png", action="store_true", help="skip the picture (no matplotlib)")
    p.add_argument("--from-json", metavar="FILE",
                   help="re-analyse a JSON this tool wrote (no measuring)")
    return p


# --- report helpers (the library measures; this file prints, fits, draws and writes) -------------

def machine(threads):
    """CPU model, ISA flags that change kernels, cores, threads, runtime versions, load."""
    cpu, isa, cores, _, versions = machine_fingerprint(threads).split("|")
    return {"cpu": cpu, "isa": isa.split(",") if isa else [],
            "cores": int(cores.split("=")[1]), "threads": threads,
            "versions": [v for v in versions.split(",") if v] + [f"torch={torch.__version__}"],
            "loadavg_start": os.getloadavg()[0]}


def fits(rows):
    """How latency follows mult-adds: power-law exponents (bench.scaling_exponents, on a full
    alpha x resolution grid) and a straight line latency = floor + slope * GMAC."""
    out = {}
    if len(rows) >= 3:
        ma = np.array([r.mult_adds / 1e9 for r in rows])
        ms = np.array([r.latency_ms for r in rows])
        slope, floor = np.polyfit(ma, ms, 1)
        out["linear"] = {"floor_ms": round(float(floor), 3),
                         "ms_per_gmac": round(float(slope), 3)}
    alphas = sorted({r.alpha for r in rows})
    sizes = sorted({r.resolution for r in rows})
    grid = {(r.alpha, r.resolution) for r in rows}
    if len(alphas) >= 2 and len(sizes) >= 2 and grid == {(a, s) for a in alphas for s in sizes} \
            and len(rows) == len(grid):
        try:  # the classifier benchmark's fit (a sibling tool), when it is there
            sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
            from classifier_bench import scaling_exponents
        except ImportError as exc:
            out["exponents_error"] = f"tools/classifier_bench.py: {exc}"
            return out
        finally:
            sys.path.pop(0)
        exps = scaling_exponents([{"alpha": r.alpha, "resolution": r.resolution,
                                   "mult_adds": r.mult_adds, "ms": r.latency_ms} for r in rows],
                                 "ms")
        out["exponents"] = {k: round(v, 3) for k, v in exps.items()}
    return out


def _gmacs(row):
    return row.batch * row.mult_adds / 1e9 / (row.latency_ms / 1e3)


def _acc(v):
    return "–" if v is None else f"{v:.1f}"


def frontier_table(result):
    """The frontier as a markdown table, the choice marked."""
    classify = result.task == "classify"
    head = ["model", "input", "mult-adds (M)", "params (M)"]
    head += ["top-1", "top-5", "accuracy source"] if classify else []
    head += [f"ms / call (b{result.rows[0].batch}, median)", "p90", "GMAC/s", "backend", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result.frontier:
        cells = [r.name, f"{r.resolution}", f"{r.mult_adds / 1e6:.1f}", f"{r.params / 1e6:.2f}"]
        if classify:
            cells += [_acc(r.top1), _acc(r.top5), r.accuracy_source or "–"]
        mark = f"**best within {result.budget_ms:g} ms**" if r is result.choice else ""
        cells += [f"{r.latency_ms:.3f}", f"{r.p90_ms:.3f}", f"{_gmacs(r):.1f}", r.backend, mark]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def all_rows_table(result):
    """Every measured model, fastest first, with what dominates the ones off the frontier."""
    classify = result.task == "classify"
    head = ["model", "mult-adds (M)"] + (["top-1"] if classify else []) + [
        "ms (median)", "min", "p90", "GMAC/s", "backend", "frontier"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result.rows:
        if r.on_frontier:
            where = "yes"
        elif r.dominated_by:
            where = f"no: {r.dominated_by} is as fast or faster and as good or better"
        else:
            where = "not ranked: no published accuracy"
        cells = [r.name, f"{r.mult_adds / 1e6:.1f}"] + ([_acc(r.top1)] if classify else []) + [
            f"{r.latency_ms:.3f}", "–" if r.min_ms is None else f"{r.min_ms:.3f}",
            f"{r.p90_ms:.3f}", f"{_gmacs(r):.1f}", r.backend, where]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(data, path):
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1, default=str)
    return path


def _log_ticks(axis):
    """Log axis with plain 1-2-5 labels (no 2x10^1 crowding)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0, 7.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot(result, fit, path):
    """Left: the measured trade-off with the frontier (and budget); right: the paper's view,
    published accuracy vs mult-adds (classify) or latency vs mult-adds (detector)."""
    plt = pyplot()
    classify = result.task == "classify"
    score = (lambda r: r.top1) if classify else (lambda r: r.mult_adds / 1e6)
    ylabel = "ImageNet top-1 (%, published)" if classify else "mult-adds (M) (no mAP published)"
    alphas = sorted({r.alpha for r in result.rows} | {a.alpha for a in accuracy_table()},
                    reverse=True)
    colours = {a: f"C{i % 10}" for i, a in enumerate(alphas)}  # the same in both panels
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    for r in result.rows:
        if score(r) is None:
            continue
        c = colours[r.alpha]
        ax.scatter(r.latency_ms, score(r), color=c, s=40 if r.on_frontier else 18,
                   alpha=1.0 if r.on_frontier else 0.45, zorder=3)
        ax.annotate(r.name, (r.latency_ms, score(r)), textcoords="offset points",
                    xytext=(4, 3), fontsize=7)
    front = result.frontier
    ax.plot([r.latency_ms for r in front], [score(r) for r in front], "k-", lw=1.2,
            label="Pareto frontier", zorder=2)
    if result.budget_ms:
        ax.axvline(result.budget_ms, color="r", ls="--", lw=1,
                   label=f"budget {result.budget_ms:g} ms")
    if result.choice is not None:
        ax.scatter(result.choice.latency_ms, score(result.choice), s=220, facecolors="none",
                   edgecolors="r", lw=2, zorder=4,
                   label=f"best within budget: {result.choice.name}")
    for a in sorted({r.alpha for r in result.rows if score(r) is not None}, reverse=True):
        ax.scatter([], [], color=colours[a], label=f"alpha {a}")
    ax.set_xscale("log")
    _log_ticks(ax.xaxis)
    first = result.rows[0]
    used = sorted({r.backend for r in result.rows})
    ax.set_xlabel(f"measured latency, ms per call ({'/'.join(used)} {first.precision}, "
                  f"batch {first.batch}, {first.threads} threads)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{result.task}: accuracy vs measured latency on this machine" if classify
                 else "SSDLite320 on each backbone: mult-adds vs measured latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")

    if classify:
        table = accuracy_table(result.accuracy_source)
        for a in sorted({row.alpha for row in table}, reverse=True):
            pts = [(count(a, row.resolution).mult_adds / 1e6, row.top1, row) for row in table
                   if row.alpha == a and row.top1 is not None]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colours[a],
                     label=f"alpha {a}")
            for ma, top1, row in pts:
                ax2.annotate(f"{row.resolution}", (ma, top1), textcoords="offset points",
                             xytext=(4, -9), fontsize=7)
        paper = [(count(row.alpha, row.resolution).mult_adds / 1e6, row.paper_top1)
                 for row in table if row.paper_top1 is not None]
        ax2.scatter([p[0] for p in paper], [p[1] for p in paper], marker="s", s=60,
                    facecolors="none", edgecolors="k", label="paper Tables 6-7", zorder=3)
        ax2.set_xscale("log")
        _log_ticks(ax2.xaxis)
        ax2.set_xlabel("mult-adds (M), paper's count")
        ax2.set_ylabel("ImageNet top-1 (%)")
        ax2.set_title("published: accuracy vs mult-adds (the paper's Fig. 4)", fontsize=10)
        fig.text(0.5, 0.005, "accuracy: " + SOURCES[result.accuracy_source], fontsize=6,
                 ha="center", va="bottom")
    else:
        for r in result.rows:
            ax2.scatter(r.mult_adds / 1e6, r.latency_ms, color=colours[r.alpha])
            ax2.annotate(r.name, (r.mult_adds / 1e6, r.latency_ms), textcoords="offset points",
                         xytext=(4, 3), fontsize=7)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        _log_ticks(ax2.xaxis)
        _log_ticks(ax2.yaxis)
        ax2.set_xlabel("mult-adds (M)")
        ax2.set_ylabel("ms per call")
        ax2.set_title("latency vs mult-adds" + (
            f" (latency ~ MA^{fit['exponents']['mult_adds']:.2f})" if "exponents" in fit else ""),
            fontsize=10)
    ax2.grid(True, which="both", alpha=0.3)
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save_png(fig, path)


def _fail(parser, message):
    parser.print_usage(sys.stderr)
    print(f"{osp.basename(sys.argv[0] or 'tradeoff.py')}: error: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    # every check before any model is built
    if args.budget_ms is not None and not args.budget_ms > 0:
        return _fail(parser, f"--budget-ms must be > 0, got {args.budget_ms:g}")
    for name in ("rounds", "calls"):
        if getattr(args, name) < 1:
            return _fail(parser, f"--{name} must be >= 1")
    if args.accuracy_source not in SOURCES:
        return _fail(parser, f"unknown --accuracy-source {args.accuracy_source!r}; choose one of "
                             f"{', '.join(SOURCES)}")
    data = None
    try:
        if args.from_json:
            if args.models or args.add:
                return _fail(parser, "--from-json re-analyses a saved measurement; --models / "
                                     "--add need a new one (drop --from-json)")
            try:
                with open(args.from_json) as f:
                    data = json.load(f)
                rows = [t.Row.from_dict(r) for r in data["rows"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                return _fail(parser, f"--from-json {args.from_json!r} is not a tradeoff JSON "
                                     f"written by this tool ({exc})")
            task = data.get("task", "classify")
        else:
            task = args.task
            timing = Timing(args.backend, args.precision, args.batch, args.threads, args.rounds,
                            args.calls)
            check_options(timing, task)
            models = t.parse_models(args.models, task) if args.models else t.default_models(task)
            if args.add:
                models += [m for m in t.parse_models(args.add, task) if m not in models]
    except (ValueError, ImportError) as exc:
        return _fail(parser, str(exc))
    try:
        check_output_dir(args.output)
    except PermissionError as exc:
        return _fail(parser, str(exc))
    if not args.no_png:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _fail(parser, "the picture needs matplotlib: pip install matplotlib (or pass "
                                 "--no-png)")

    if data is None:
        info = machine(args.threads)
        print(f"[tradeoff] machine: {info['cpu']} ({' '.join(info['isa'])}), {info['cores']} "
              f"cores, {args.threads} threads; load average {info['loadavg_start']:.2f}",
              flush=True)
        start = time.time()
        rows = measure(models, task, timing, log=lambda m: print(m, flush=True))
        info["loadavg_end"] = os.getloadavg()[0]
        info["seconds"] = round(time.time() - start, 1)
        options = timing.as_dict()
        # the measurement is kept first: whatever happens below, --from-json can re-read it
        write_json({"task": task, "options": options, "machine": info,
                    "rows": [r.as_dict() for r in rows]},
                   osp.join(args.output, f"tradeoff_{task}.json"))
    else:
        info, options = data.get("machine", {}), data.get("options", {})
    error = None
    try:
        result = t.analyse(rows, args.budget_ms, args.accuracy_source, options)
    except t.BudgetError as exc:
        result, error = exc.result, str(exc)
    fit = fits(result.rows)

    print()
    print(f"Machine: {info.get('cpu', '?')} ({' '.join(info.get('isa', []))}), "
          f"{info.get('cores', '?')} cores; {options.get('threads')} threads, backend "
          f"{options.get('backend')}, {options.get('precision')}, batch {options.get('batch')}"
          + (f"; load average {info['loadavg_start']:.2f} -> {info['loadavg_end']:.2f}"
             if "loadavg_end" in info else ""))
    if info.get("loadavg_start", 0) > max(1.0, 0.5 * info.get("cores", 2)):
        print(f"warning: load average {info['loadavg_start']:.2f} at start: other processes "
              f"share the CPU, latencies are inflated and noisy")
    if result.task == "classify":
        print(f"Accuracy: {SOURCES[result.accuracy_source]}")
    else:
        print("No accuracy is published for these detectors: the frontier ranks by mult-adds "
              "(the paper's 16 models gain accuracy with mult-adds, Fig. 4), no mAP is invented. "
              "Random weights, background-biased head: no NMS work on random boxes.")
    print("\nPareto frontier (fastest first):\n")
    print(frontier_table(result))
    print("\nAll models:\n")
    print(all_rows_table(result))
    if "linear" in fit:
        print(f"\nlatency ~ {fit['linear']['floor_ms']:.3f} ms + "
              f"{fit['linear']['ms_per_gmac']:.2f} ms/GMAC"
              + (" ; latency ~ alpha^{alpha:.2f} rho^{rho:.2f}, ~ mult-adds^{mult_adds:.2f} "
                 "(mult-adds ~ alpha^{mult_adds_alpha:.2f} rho^{mult_adds_rho:.2f})".format(
                     **fit["exponents"]) if "exponents" in fit else ""))
    if result.choice is not None:
        use = t.usage(result.choice)
        c = result.choice
        what = (f"top-1 {c.top1:.1f}% ({c.accuracy_source})" if c.task == "classify"
                else f"{c.mult_adds / 1e9:.2f} GMAC")
        print(f"\nBest within {result.budget_ms:g} ms: {c.name} at {c.latency_ms:.3f} ms, {what}")
        print(f"  weights entry: {use['weights'] or 'none'} ({use['weights_note']})"
              + (f"; also: {', '.join(use['other_weights'])}" if use["other_weights"] else ""))
        print(f"  mmdet:       {use['mmdet']}")
        print(f"  torchvision: {use['torchvision']}")
        if "core" in use:
            print(f"  core:        {use['core']}")

    stem = osp.join(args.output, f"tradeoff_{result.task}")
    out = result.as_dict()
    out.update(machine=info, fits=fit, written=time.strftime("%Y-%m-%d %H:%M:%S"),
               budget_error=error,
               accuracy_table=[dict(dataclasses.asdict(r), citation=r.citation)
                               for r in accuracy_table(result.accuracy_source)])
    files = [write_json(out, stem + ".json")]
    if not args.no_png:
        files.append(plot(result, fit, stem + ".png"))
    print("\nwritten: " + ", ".join(files))
    if error:
        print(f"{osp.basename(sys.argv[0] or 'tradeoff.py')}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
