"""Parameter sweeps: one task template times a matrix of values, expanded into the cartesian product.

A template names matrix keys as ``{KEY}`` placeholders in its command arguments, its environment
values, its labels and its resources (attachment key and local path), e.g. one data shard per
task; ``{{`` and ``}}`` stand for literal braces. Expansion is pure (no I/O) and
lazy, so a 100,000-task sweep is validated and counted before anything is built or sent. The SDK's
``submit_sweep`` (both faces) sends the expansion through ``POST /tasks/submit`` in chunks.

Combinations come in row-major order of the matrix as given: the last key varies fastest, so
``{"a": ["1", "2"], "b": ["x", "y"]}`` yields a=1 b=x, a=1 b=y, a=2 b=x, a=2 b=y.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence

from mitosis.client.errors import SweepError
from mitosis.wire import models as m

DEFAULT_MAX_TASKS = 100_000
DEFAULT_CHUNK = 500

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")

Matrix = Mapping[str, Sequence[str]]


def placeholders(text: str) -> list[str]:
    """The ``{KEY}`` names used in ``text`` (escaped ``{{KEY}}`` is not one)."""
    return [found.group(1) for found in _TOKEN.finditer(text) if found.group(1)]


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``{KEY}`` by its value and ``{{``/``}}`` by a literal brace."""

    def repl(found: re.Match[str]) -> str:
        token = found.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return values[found.group(1)]

    return _TOKEN.sub(repl, text)


def _template_texts(template: m.SubmitTaskReq) -> list[tuple[str, str]]:
    """(where, text) of every string a placeholder may appear in."""
    spec = template.task_spec
    out = [(f"argument {i + 1}", arg) for i, arg in enumerate(spec.args)]
    out += [(f"env {key}", value) for key, value in spec.envs.items()]
    out += [(f"label {label!r}", label) for label in template.labels]
    for i, res in enumerate(spec.resources):
        out.append((f"resource {i + 1} local path", res.local_path))
        if res.remote_file.Attachment is not None:
            out.append((f"resource {i + 1} attachment key", res.remote_file.Attachment.key))
    return out


def _resource(res: m.RemoteResourceDownload, values: Mapping[str, str]) -> m.RemoteResourceDownload:
    remote = res.remote_file
    if remote.Attachment is not None:
        key = substitute(remote.Attachment.key, values)
        remote = remote.model_copy(update={"Attachment": remote.Attachment.model_copy(update={"key": key})})
    return res.model_copy(update={"remote_file": remote, "local_path": substitute(res.local_path, values)})


def count_combinations(matrix: Matrix) -> int:
    return math.prod(len(values) for values in matrix.values())


def check_matrix(template: m.SubmitTaskReq, matrix: Matrix, max_tasks: int = DEFAULT_MAX_TASKS) -> int:
    """Validate a sweep and return how many tasks it expands to; raise :class:`SweepError`.

    Refused: an invalid or unused key, a key without values, an empty or repeated value, a
    placeholder that names no key, and more combinations than ``max_tasks``.
    """
    if not matrix:
        raise SweepError("the matrix is empty: give at least one KEY=v1,v2,...")
    for key, values in matrix.items():
        if not _KEY.fullmatch(key):
            raise SweepError(f"matrix key {key!r} is not a name: use letters, digits and _ (e.g. lr, seed_1)")
        if not values:
            raise SweepError(f"matrix key {key!r} has no values: give KEY=v1,v2,...")
        for value in values:
            if value == "":
                raise SweepError(f"matrix key {key!r} has an empty value (check for ',,' or a trailing ',')")
        seen: set[str] = set()
        for value in values:
            if value in seen:
                raise SweepError(f"matrix key {key!r} lists the value {value!r} twice")
            seen.add(value)
    used: set[str] = set()
    for where, text in _template_texts(template):
        for name in placeholders(text):
            if name not in matrix:
                known = ", ".join(matrix)
                raise SweepError(
                    f"unknown placeholder {{{name}}} in {where}: the matrix has {known} "
                    "(write {{ and }} for literal braces)"
                )
            used.add(name)
    unused = [key for key in matrix if key not in used]
    if unused:
        names = ", ".join(f"{{{k}}}" for k in unused)
        raise SweepError(
            f"matrix key(s) {', '.join(unused)} not used: put {names} in the command, an env value, "
            "a label or a resource"
        )
    total = count_combinations(matrix)
    if total > max_tasks:
        sizes = " x ".join(str(len(v)) for v in matrix.values())
        raise SweepError(
            f"the matrix expands to {total:,} tasks ({sizes}), more than the limit of {max_tasks:,}: "
            "shrink it or raise the limit (--max-tasks / max_tasks=)"
        )
    return total


def combinations(matrix: Matrix) -> Iterator[dict[str, str]]:
    """Every assignment of one value per key, last key fastest."""
    keys = list(matrix)
    for values in itertools.product(*(matrix[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def instantiate(template: m.SubmitTaskReq, values: Mapping[str, str]) -> m.SubmitTaskReq:
    """The template with ``values`` substituted (copies, no re-validation: a sweep may be large)."""
    spec = template.task_spec
    new_spec = spec.model_copy(
        update={
            "args": [substitute(a, values) for a in spec.args],
            "envs": {k: substitute(v, values) for k, v in spec.envs.items()},
            "resources": [_resource(r, values) for r in spec.resources],
        }
    )
    labels = list(dict.fromkeys(substitute(label, values) for label in template.labels))
    return template.model_copy(update={"labels": labels, "task_spec": new_spec})


def instances(template: m.SubmitTaskReq, matrix: Matrix) -> Iterator[m.SubmitTaskReq]:
    """One request per combination, lazily; call :func:`check_matrix` first."""
    return (instantiate(template, values) for values in combinations(matrix))


def expand_matrix(
    template: m.SubmitTaskReq, matrix: Matrix, max_tasks: int = DEFAULT_MAX_TASKS
) -> list[m.SubmitTaskReq]:
    """Every task of the sweep, in :func:`combinations` order; raise :class:`SweepError` if invalid."""
    check_matrix(template, matrix, max_tasks)
    return list(instances(template, matrix))


def chunks(reqs: Iterator[m.SubmitTaskReq], size: int) -> Iterator[list[m.SubmitTaskReq]]:
    if size < 1:
        raise SweepError(f"chunk size must be at least 1, not {size}")
    size = min(size, m.MAX_BATCH_ITEMS)
    while batch := list(itertools.islice(reqs, size)):
        yield batch


def parse_matrix_item(text: str) -> tuple[str, list[str]]:
    """``KEY=v1,v2,...`` as the command line writes it."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SweepError(f"{text!r}: expected KEY=v1,v2,... e.g. lr=0.1,0.01")
    if rest == "":
        raise SweepError(f"matrix key {key!r} has no values: give {key}=v1,v2,...")
    return key, rest.split(",")


def parse_matrix(items: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, values = parse_matrix_item(item)
        if key in out:
            raise SweepError(f"matrix key {key!r} given twice: list all its values in one KEY=v1,v2,...")
        out[key] = values
    return out
