"""Render a benchmarks/run.py JSON file as the Markdown tables of docs/performance.md.

python -m benchmarks.report benchmarks/results/<file>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    r = doc["results"]
    out = [
        f"Machine: {m['nproc']} x {m['cpu_model']}, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, PostgreSQL {m['postgresql']}, SQLite {m['sqlite']}; "
        f"load average at start {m.get('load_average_at_start')} ({m['time']}, quick={doc['quick']}).",
        "",
    ]
    if isinstance(r.get("sql"), dict) and "error" not in r["sql"]:
        out += ["### SQL per task lifecycle (submit + fetch + Finish + Commit)", ""]
        out += [
            _row("database", "statements", "transactions", "round trips"),
            _row("---", "---", "---", "---"),
        ]
        for kind, v in r["sql"].items():
            out.append(
                _row(
                    kind,
                    v["task_lifecycle_statements"],
                    v["task_lifecycle_transactions"],
                    v["task_lifecycle_round_trips"],
                )
            )
        out.append("")
    if isinstance(r.get("dispatch"), dict) and "runs" in r["dispatch"]:
        out += [f"### Dispatch throughput ({r['dispatch']['n_tasks']} x /bin/true)", ""]
        out += [
            _row(
                "database",
                "workers",
                "tasks/s",
                "bare-loop baseline/s",
                "ratio",
                "coord CPU ms/task",
                "worker CPU ms/task",
                "exactly once",
                "ratio of each round",
            ),
            _row(*["---"] * 9),
        ]
        for x in r["dispatch"]["runs"]:
            out.append(
                _row(
                    x["database"],
                    x["workers"],
                    x["tasks_per_s"],
                    x["baseline_tasks_per_s"],
                    x["ratio"],
                    x.get("coordinator_cpu_ms_per_task"),
                    x.get("worker_cpu_ms_per_task"),
                    x.get("exactly_once_every_round", x["exactly_once"]["ok"]),
                    " / ".join(str(y["ratio"]) for y in x.get("rounds", [])) or "-",
                )
            )
        out.append("")
    if isinstance(r.get("celery"), dict) and "runs" in r["celery"]:
        out += ["### Celery 5 + Redis, same workload", ""]
        out += [
            _row("concurrency", "tasks/s", "Mitosis PostgreSQL tasks/s", "Mitosis / Celery"),
            _row(*["---"] * 4),
        ]
        pg = {
            x["workers"]: x["tasks_per_s"]
            for x in r.get("dispatch", {}).get("runs", [])
            if x["database"] == "postgresql"
        }
        for x in r["celery"]["runs"]:
            mine = pg.get(x["concurrency"])
            out.append(
                _row(
                    x["concurrency"],
                    x["tasks_per_s"],
                    mine,
                    round(mine / x["tasks_per_s"], 3) if mine else "-",
                )
            )
        if "latency" in r["celery"]:
            lat = r["celery"]["latency"]
            out += [
                "",
                f"Celery submit → start p50/p99: {lat['submit_to_start']['p50_ms']} / "
                f"{lat['submit_to_start']['p99_ms']} ms; submit → result {lat['submit_to_result']['p50_ms']} / "
                f"{lat['submit_to_result']['p99_ms']} ms.",
            ]
        out.append("")
    if isinstance(r.get("latency"), dict) and "runs" in r["latency"]:
        b = r["latency"]["baseline_spawn_to_start"]
        out += [f"### Latency, one task at a time to an idle worker ({r['latency']['n_tasks']} tasks)", ""]
        out += [
            _row(
                "database",
                "submit→start p50",
                "p99",
                "submit→archived p50",
                "p99",
                "baseline spawn→start p50",
                "`GET /health` p50 back to back / after 50 ms idle",
            ),
            _row(*["---"] * 7),
        ]
        for x in r["latency"]["runs"]:
            s, d = x["submit_to_start"], x["submit_to_archived"]
            hb, hi = x.get("health_back_to_back"), x.get("health_after_idle")
            out.append(
                _row(
                    x["database"],
                    f"{s['p50_ms']} ms",
                    f"{s['p99_ms']} ms",
                    f"{d['p50_ms']} ms",
                    f"{d['p99_ms']} ms",
                    f"{b['p50_ms']} ms",
                    f"{hb['p50_ms']} / {hi['p50_ms']} ms" if hb and hi else "-",
                )
            )
        out.append("")
    if isinstance(r.get("submission"), dict) and "runs" in r["submission"]:
        sub = r["submission"]
        out += [f"### Submission ({sub['n_batch']} in one batch; {sub['n_single']} one by one)", ""]
        out += [
            _row(
                "database",
                "batch s",
                "tasks/s",
                "raw SQL insert s",
                "one-by-one req/s",
                "GET /health req/s",
                "ratio",
            ),
            _row(*["---"] * 7),
        ]
        for x in sub["runs"]:
            out.append(
                _row(
                    x["database"],
                    x["batch_s"],
                    x["batch_tasks_per_s"],
                    x["baseline_raw_sql_insert_s"],
                    x["single_req_per_s"],
                    x["baseline_health_req_per_s"],
                    x["single_ratio"],
                )
            )
        out.append("")
    if isinstance(r.get("state"), dict) and "timings" in r["state"]:
        st = r["state"]
        out += [
            f"### Scale of state: {st['archived']:,} archived + {st['waiting']:,} waiting (PostgreSQL)",
            "",
        ]
        out += [_row("request", "p50", "p99", "matches"), _row(*["---"] * 4)]
        for name, t in st["timings"].items():
            out.append(_row(name, f"{t['p50_ms']} ms", f"{t['p99_ms']} ms", t.get("result_count", "")))
        out.append("")
    if isinstance(r.get("many"), dict) and "heartbeats" in r["many"]:
        mw = r["many"]
        out += ["### Many workers (one coordinator process, PostgreSQL)", ""]
        out += [
            _row("offered hb/s", "achieved hb/s", "coordinator CPU cores", "cores per 1,000 hb/s"),
            _row(*["---"] * 4),
        ]
        for h in mw["heartbeats"]:
            out.append(
                _row(
                    h["offered_per_s"],
                    h["achieved_per_s"],
                    h["coordinator_cpu_s_per_s"],
                    h["cpu_cores_per_1000_hb_per_s"],
                )
            )
        p = mw["idle_long_polls"]
        out += [
            "",
            f"{p['held']} idle long-polls held: {p['held_cpu_cores']} cores (idle baseline "
            f"{p['baseline_idle_cpu_cores']}) → {p['cpu_cores_per_1000_idle_polls']} cores per 1,000; RSS "
            f"{p['rss_before_mib']} → {p['rss_held_mib']} MiB = {p['memory_kib_per_idle_poll']} KiB per idle poll.",
            "",
        ]
    if isinstance(r.get("scaleout"), dict) and "throughput" in r["scaleout"]:
        so = r["scaleout"]
        out += [
            f"### Scale-out behind nginx ({so['n_tasks']} tasks, {so['workers']} workers, PostgreSQL)",
            "",
        ]
        out += [_row("coordinators", "tasks/s", "ratio to 1 coordinator direct"), _row(*["---"] * 3)]
        out.append(_row("1 (direct, baseline)", so["baseline_direct_1_coordinator"]["tasks_per_s"], 1.0))
        for x in so["throughput"]:
            out.append(_row(x["coordinators"], x["tasks_per_s"], x["ratio_to_direct"]))
        f = so["failover"]
        out += [
            "",
            f"Failover (3 coordinators, one SIGKILLed after {f['killed_after_archived']} archived): "
            f"{f['archived']}/{f['submitted']} archived, {f['left_in_active']} left active, "
            f"{f['tasks_run_twice']} run twice, {f['client_submit_retries']} client retries → "
            f"ok={f['no_task_lost_or_run_twice']}.",
            "",
        ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
