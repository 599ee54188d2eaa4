"""The Celery side of the comparison: one task that spawns a command, as a Mitosis worker does."""

from __future__ import annotations

import os
import subprocess

from celery import Celery

app = Celery(
    "mitosis_bench",
    broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("BENCH_CELERY_BACKEND", "redis://127.0.0.1:6379/1"),
)
app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"], result_expires=3600
)


@app.task(name="bench.run")  # type: ignore[untyped-decorator]
def run(args: list[str]) -> int:
    return subprocess.run(args, check=False).returncode
