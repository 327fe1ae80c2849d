"""CPU inference benchmark: MobileNetV1 deploy / compile / ONNX Runtime fp32 / int8 vs timm and
torchvision, side by side in one run with the same threads.

    python tools/benchmark.py                      # 2 threads, writes work_dirs/benchmark/
    python tools/benchmark.py --threads 4 --rounds 20 --out-dir bench
    python tools/benchmark.py --quick              # fewer repetitions, no grid, no compile
    # the fp32 limit and the package vs the runtimes' defaults only (a few minutes on 2 cores):
    python tools/benchmark.py --no-grid --no-compile --no-mobile --no-agreement --no-peers

Writes benchmark.md (tables, targets), benchmark.json and benchmark.png (latency per path; latency
vs mult-adds of the 16 alpha x resolution models). See tools/classifier_bench.py for the method.
"""
import argparse
import os
import sys

from classifier_bench import BenchConfig, format_markdown, run_benchmark, write_outputs


LITERT_DIR = os.environ.get("MNET_LITERT_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mnet-backbone", "litert")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10, help="batch-1 rounds (x --calls each)")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batch-rounds", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile path")
    p.add_argument("--no-peers", action="store_true", help="skip timm and torchvision")
    p.add_argument("--no-grid", action="store_true", help="skip the 16 alpha x resolution models")
    p.add_argument("--no-mobile", action="store_true",
                   help="skip the ExecuTorch .pte and LiteRT .tflite rows of the package")
    p.add_argument("--no-agreement", action="store_true",
                   help="skip the int8 vs fp32 agreement (a trained or real-weights classifier)")
    p.add_argument("--agreement-images", type=int, default=500)
    p.add_argument("--out-dir", default="work_dirs/benchmark")
    p.add_argument("--litert-dir", default=LITERT_DIR,
                   help="folder tools/install_litert.sh installed the LiteRT peer into "
                        "(default: %(default)s; the peer is skipped when it is not there)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 3 rounds, 1 batch round, no compile, no grid, a tiny "
                        "agreement model (0.25 MobileNetV1-64, 1 epoch: its agreement means "
                        "little)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.path.isdir(args.litert_dir):
        sys.path.append(args.litert_dir)  # after the venv: the peer shadows none of its packages
    cfg = BenchConfig(threads=args.threads, rounds=args.rounds, calls=args.calls,
                      batch=args.batch, batch_rounds=args.batch_rounds,
                      compile=not args.no_compile, peers=not args.no_peers,
                      grid=not args.no_grid, mobile=not args.no_mobile,
                      agreement=not args.no_agreement, agreement_images=args.agreement_images,
                      work_dir=args.out_dir)
    if args.quick:
        cfg.rounds, cfg.batch_rounds, cfg.compile, cfg.grid = 3, 1, False, False
        cfg.agreement_images, cfg.calibration_images = 100, 50
        cfg.agreement_model = dict(alpha=0.25, resolution=64, num_train=400, num_val=100,
                                   epochs=1, clutter=False)
    report = run_benchmark(cfg)
    files = write_outputs(report, args.out_dir)
    print(format_markdown(report))
    print("\nwrote " + ", ".join(files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
