"""Run every benchmark with the sizes docs/benchmarks.md reports, then draw the plots.

python -m bench.run_all            # full run (about 30 minutes on 2 cores)
python -m bench.run_all --quick    # small sizes, to check the scripts
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bench.common import RESULTS


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = [
        ["bench.convergence", "--trials", "5" if args.quick else "50"],
        [
            "bench.bulk",
            "--receivers",
            "routed",
            "bird",
            "frr",
            "--sizes",
            *(["500"] if args.quick else ["1000", "10000", "100000"]),
        ],
        ["bench.dataplane", "--seconds", "2" if args.quick else "5", "--repeat", "1" if args.quick else "9"],
        ["bench.failover", "--trials", "1" if args.quick else "3"],
        ["bench.restarts", "--seconds", "6" if args.quick else "20"],
        [
            "bench.blocks",
            "--containers",
            "5" if args.quick else "50",
            "--trials",
            "2" if args.quick else "20",
        ],
        ["bench.cni", "--trials", "2" if args.quick else "30"],
        ["bench.docker", "--trials", "2" if args.quick else "20"],
        ["bench.exabgp_receive", "--count", "500" if args.quick else "100000"],
        ["bench.stages", "--count", "1000" if args.quick else "100000"],
        ["bench.memory", "--sizes", *(["1000"] if args.quick else ["10000", "100000"])],
    ]
    for module, *rest in runs:
        print(f"== python -m {module} {' '.join(rest)}", flush=True)
        subprocess.run([sys.executable, "-m", module, *rest], check=True)
    subprocess.run([sys.executable, "-m", "bench.plots"], check=True)
    print(f"results and plots in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
