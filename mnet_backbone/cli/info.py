"""This install and this machine, as a bug report or a deploy decision needs them (``mnet info``).

Package and library versions; the CPU features that change which kernels run (AVX2, AVX-512,
AVX512-VNNI and AMX-INT8 for int8, AVX512-BF16 and AMX-BF16 for bf16: ``/proc/cpuinfo``, as
:func:`mnet_backbone.deploy.backends.kernel_flags` reads it); the installed backends and mobile
runtimes; which backend configuration ``auto`` picked, for which file and when (the cache of
:func:`mnet_backbone.deploy.backends.choose`); the weights caches.
"""
import argparse
import json
import os
import platform
import sys
from collections import Counter
from importlib import metadata
from typing import Dict, List, Optional

import torch

from .. import __version__
from ..deploy import backends, mobile
from ..weights.hub import cache_dir
from ..weights.tf_graph import MissingGraphError, imagenet_graph_path

HELP = "versions, CPU features, backends, the backend 'auto' picked, the weights cache"
DESCRIPTION = __doc__ + "\n  mnet info [--json]"

LIBRARIES = ("torch", "torchvision", "numpy", "Pillow", "mmengine", "mmcv", "mmdet", "mmpretrain",
             "onnx", "onnxscript", "onnxruntime", "openvino", "nncf", "executorch",
             "ai-edge-litert", "litert-torch", "opencv-python", "opencv-python-headless", "tqdm")
# The flags of backends.KERNEL_FLAGS (/proc/cpuinfo) -> what each does for this package's models.
CPU_FEATURES = {
    "avx2": "AVX2: 8-wide fp32 kernels",
    "avx512f": "AVX-512: 16-wide fp32 kernels",
    "avx512_vnni": "AVX512-VNNI: int8 dot products (int8 files run faster than fp32)",
    "amx_int8": "AMX-INT8: int8 matrix tiles",
    "avx512_bf16": "AVX512-BF16: native bf16 (--precision bf16 on OpenVINO)",
    "amx_bf16": "AMX-BF16: bf16 matrix tiles",
}
RECENT_CHOICES = 5
_DISTRIBUTION = {"litert": "ai-edge-litert"}  # runtime -> the package that installs it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print everything as one JSON object")


def _version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor() or "unknown"


def cpu() -> Dict[str, object]:
    return {"model": _cpu_model(), "cores": os.cpu_count(), "torch_threads":
            torch.get_num_threads(), "features": backends.kernel_flags(),
            "bf16": backends.bf16_support()}


def runtimes() -> Dict[str, Dict[str, object]]:
    """Each backend and mobile runtime: installed (runs files), writes files, how to install."""
    out: Dict[str, Dict[str, object]] = {}
    for name in backends.BACKENDS:
        try:
            backends.require_backend(name)
            out[name] = {"runs": True, "writes": True, "version": _version(name)}
        except backends.BackendNotInstalledError as exc:
            out[name] = {"runs": False, "writes": False, "install": str(exc)}
    for name in mobile.RUNTIMES:
        entry: Dict[str, object] = {"version": _version(_DISTRIBUTION.get(name, name))}
        for what, export in (("runs", False), ("writes", True)):
            try:
                mobile.require_runtime(name, export=export)
                entry[what] = True
            except mobile.MobileRuntimeNotInstalledError as exc:
                entry[what] = False
                entry.setdefault("install", str(exc))
        out[name] = entry
    return out


def _parse_choice(key: str, value: dict) -> Dict[str, object]:
    """A cache key is ``fingerprint|file digest|precision|batch|candidates``; the fingerprint
    (:func:`~mnet_backbone.deploy.backends.machine_fingerprint`) holds ``threads=N``."""
    parts = key.split("|")
    fingerprint = "|".join(parts[:-4])
    threads = next((int(p.split("=", 1)[1]) for p in parts if p.startswith("threads=")), 0)
    return {"file_sha256_16": parts[-4], "precision": parts[-3], "batch": int(parts[-2]),
            "candidates": parts[-1].split(","), "threads": threads,
            "this_machine": fingerprint == backends.machine_fingerprint(threads),
            "backend": "/".join(filter(None, (value.get("backend"), value.get("config")))),
            "median_ms": value.get("median_ms", {}),
            "measured": value.get("measured")}


def auto_choices() -> Dict[str, object]:
    """What ``backend='auto'`` measured and picked, from its cache file."""
    # The backends module owns where the cache lives and how a damaged one reads (as empty).
    path = backends._cache_path(None)
    choices = [_parse_choice(k, v) for k, v in backends._read_cache(path).items()
               if isinstance(v, dict) and k.count("|") >= 4]
    here = [c for c in choices if c["this_machine"]]
    return {"cache": path, "exists": os.path.isfile(path), "entries": len(choices),
            "this_machine": len(here),
            "picked": dict(Counter(str(c["backend"]) for c in here)),
            "recent": sorted(here, key=lambda c: str(c["measured"]))[-RECENT_CHOICES:]}


def _folder_size(folder: str) -> Dict[str, object]:
    files = [os.path.join(root, f) for root, _, names in os.walk(folder) for f in names]
    return {"path": folder, "exists": os.path.isdir(folder), "files": len(files),
            "mb": round(sum(os.path.getsize(f) for f in files if os.path.isfile(f)) / 2 ** 20, 1)}


def weights_caches() -> Dict[str, object]:
    try:
        graph: str = imagenet_graph_path(check_hash=False)
    except MissingGraphError as exc:
        graph = f"not fetched: {exc}"
    return {"weights": _folder_size(cache_dir()), "imagenet_tf_graph": graph}


def collect() -> Dict[str, object]:
    """Everything ``mnet info`` reports, as plain data."""
    return {"mnet-backbone": __version__,
            "package": os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "libraries": {name: _version(name) for name in LIBRARIES},
            "cpu": cpu(), "backends": runtimes(), "auto_backend": auto_choices(),
            "caches": weights_caches()}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def format_info(info: Dict[str, object]) -> str:
    """The report ``mnet info`` prints."""
    lines: List[str] = [f"mnet-backbone {info['mnet-backbone']} ({info['package']})",
                        f"python {info['python']} on {info['platform']}", "", "libraries:"]
    installed = {k: v for k, v in info["libraries"].items() if v}
    missing = sorted(k for k, v in info["libraries"].items() if not v)
    lines += [f"  {name:24} {version}" for name, version in installed.items()]
    lines.append(f"  not installed: {', '.join(missing) or 'none'}")
    c = info["cpu"]
    lines += ["", f"cpu: {c['model']}, {c['cores']} cores, torch uses {c['torch_threads']} "
                  f"threads"]
    lines += [f"  {_yes(has):3} {CPU_FEATURES.get(flag, flag)}"
              for flag, has in c["features"].items()]
    lines.append(f"  bf16 on this machine: {_yes(c['bf16']['supported'])} (OpenVINO sees "
                 f"BF16: {c['bf16']['openvino_bf16']})")
    lines += ["", "backends (runs files / writes files):"]
    for name, b in info["backends"].items():
        state = f"{_yes(b['runs'])} / {_yes(b['writes'])}"
        extra = b.get("version") or b.get("install") or ""
        lines.append(f"  {name:12} {state:9} {extra}")
    a = info["auto_backend"]
    lines += ["", f"backend 'auto' (measured once per file, precision, batch and threads; "
                  f"cache {a['cache']}):"]
    if not a["exists"]:
        lines.append("  nothing measured yet (the first deploy or DeployedDetector with "
                     "backend='auto' measures)")
    else:
        picked = ", ".join(f"{b} {n}x" for b, n in a["picked"].items()) or "none"
        lines.append(f"  {a['entries']} choices cached, {a['this_machine']} for this machine "
                     f"and runtime versions: picked {picked}")
        for r in a["recent"]:
            times = ", ".join(f"{b} {ms} ms" for b, ms in r["median_ms"].items())
            lines.append(f"  {r['measured']}: file {r['file_sha256_16']} {r['precision']} "
                         f"batch {r['batch']} threads {r['threads']} -> {r['backend']} ({times})")
    w = info["caches"]["weights"]
    lines += ["", f"weights cache: {w['path']} ({w['files']} files, {w['mb']} MB)"
              if w["exists"] else f"weights cache: {w['path']} (empty: nothing downloaded yet)",
              f"ImageNet TF graph (tests): {info['caches']['imagenet_tf_graph']}"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    info = collect()
    print(json.dumps(info, indent=1, default=str) if args.json else format_info(info))
    return 0
