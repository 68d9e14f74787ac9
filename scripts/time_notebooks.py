"""Run every course notebook top to bottom and print how long each took (a markdown table).

    python scripts/time_notebooks.py                 # full mode, all notebooks
    python scripts/time_notebooks.py --fast 00 04    # fast mode (MSANET_FAST=1), two notebooks

Each notebook runs in a fresh kernel with ``nbclient`` (what ``jupyter nbconvert --execute``
uses), from the ``notebooks/`` folder, and is not written back. The times go into
notebooks/README.md by hand, with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run(path: Path, fast: bool, timeout: int) -> float:
    os.environ["MSANET_FAST"] = "1" if fast else ""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("numbers", nargs="*", help="two-digit notebook numbers (default: all)")
    p.add_argument("--fast", action="store_true", help="fast mode (MSANET_FAST=1), as CI")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = p.parse_args()
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.numbers:
        paths = [q for q in paths if q.name[:2] in args.numbers]
        if not paths:
            print(f"No notebook numbered {' '.join(args.numbers)} in {NOTEBOOKS}.", file=sys.stderr)
            return 2
    mode = "fast" if args.fast else "full"
    print(f"| notebook | {mode} mode (s) |\n|---|---:|", flush=True)
    total, failed = 0.0, []
    for path in paths:
        try:
            seconds = run(path, args.fast, args.timeout)
        except CellExecutionError as err:  # report it and go on with the next notebook
            failed.append(path.stem)
            print(f"| {path.stem} | FAILED: {str(err).strip().splitlines()[-1][:200]} |", flush=True)
            continue
        total += seconds
        print(f"| {path.stem} | {seconds:.0f} |", flush=True)
    print(f"| all | {total:.0f} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
