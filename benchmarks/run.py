"""Run the benchmarks and print one JSON document (also saved under benchmarks/results/).

    python -m benchmarks.run [--quick] [--only dispatch,celery,latency,submission,state,many,sql,scaleout]

``--quick`` shrinks every workload (1,000 tasks, 1/2/4 workers); ``--quick --tasks 2000`` is the
issue 3 workload; the default is the issue 9 workload (5,000 tasks, 1/2/4/8 workers, 1,000,000
archived tasks). Each figure carries a
baseline measured in the same run. Only loopback services are used; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

ALL = ["sql", "dispatch", "celery", "latency", "submission", "state", "many", "scaleout"]


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        # Sized to finish in about 20 minutes on a busy 2-core machine.
        return {
            "n": 1000,
            "workers": [1, 2, 4],
            "latency_n": 100,
            "batch": 10_000,
            "single": 500,
            "archived": 200_000,
            "waiting": 20_000,
            "hb_workers": 200,
            "polls": 500,
            "scale_n": 1000,
            "dispatch_reps": 1,
        }
    return {
        "n": 5000,
        "workers": [1, 2, 4, 8],
        "latency_n": 200,
        "batch": 10_000,
        "single": 2000,
        "archived": 1_000_000,
        "waiting": 100_000,
        "hb_workers": 500,
        "polls": 1000,
        "scale_n": 5000,
        "dispatch_reps": 3,
    }


async def main_async(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    from benchmarks import (
        celery_bench,
        dispatch,
        latency,
        many_workers,
        scaleout,
        sql_count,
        state_scale,
        submission,
    )

    s = sizes(args.quick)
    if args.tasks:
        s["n"] = args.tasks
    only = args.only.split(",") if args.only else ALL
    kinds = ["postgresql", "sqlite"]
    out: dict[str, Any] = {"machine": machine, "quick": args.quick, "sizes": s, "results": {}}
    steps = {
        "sql": lambda t: sql_count.run(t, kinds),
        "dispatch": lambda t: dispatch.run(
            t, n=s["n"], worker_counts=s["workers"], kinds=kinds, reps=s["dispatch_reps"]
        ),
        "celery": lambda t: celery_bench.run(
            t, n=s["n"], worker_counts=s["workers"], latency_n=s["latency_n"]
        ),
        "latency": lambda t: latency.run(t, n=s["latency_n"], kinds=kinds),
        "submission": lambda t: submission.run(t, n_batch=s["batch"], n_single=s["single"], kinds=kinds),
        "state": lambda t: state_scale.run(t, archived=s["archived"], waiting=s["waiting"]),
        "many": lambda t: many_workers.run(t, n_workers=s["hb_workers"], n_polls=s["polls"]),
        "scaleout": lambda t: scaleout.run(t, n=s["scale_n"], workers=4),
    }
    for name in only:
        common.log(f"--- {name}")
        t0 = time.monotonic()
        with common.tmpdir(f"mito-bench-{name}-") as tmp:
            try:
                out["results"][name] = await steps[name](tmp)
            except Exception as exc:  # one failed benchmark must not lose the others' figures
                traceback.print_exc()
                out["results"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        out["results"][name + "_elapsed_s"] = round(time.monotonic() - t0, 1)
        out["results"][name + "_load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller workloads (issue 3 sizes)")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(ALL)}")
    p.add_argument("--tasks", type=int, help="tasks per dispatch run (overrides the size preset)")
    p.add_argument(
        "--out", type=Path, help="also write the JSON here [default: benchmarks/results/<time>.json]"
    )
    args = p.parse_args()
    common.raise_nofile()
    result = asyncio.run(main_async(args, common.machine_info()))
    text = json.dumps(result, indent=2, default=str)
    target = args.out or Path(__file__).resolve().parent / "results" / time.strftime("%Y%m%d-%H%M%S.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
