"""Parameter sweeps: the pure expansion (``expand_matrix``) and its validation."""

from __future__ import annotations

import pytest

from mitosis.client import SubmitTaskReq, SweepError, TaskSpec, expand_matrix
from mitosis.client.sweep import check_matrix, parse_matrix, placeholders, substitute
from mitosis.wire import models as m


def template(
    args: list[str], envs: dict[str, str] | None = None, labels: list[str] | None = None
) -> SubmitTaskReq:
    return SubmitTaskReq(
        group_name="lab", labels=labels or [], task_spec=TaskSpec(args=args, envs=envs or {})
    )


def test_cartesian_product_in_row_major_order() -> None:
    tpl = template(
        ["train", "--lr", "{lr}", "--seed={seed}"], {"LR": "{lr}", "FIXED": "x"}, ["sweep", "lr={lr}"]
    )
    out = expand_matrix(tpl, {"lr": ["0.1", "0.01"], "seed": ["1", "2", "3"]})
    assert [t.task_spec.args[2:] for t in out] == [
        ["0.1", "--seed=1"],
        ["0.1", "--seed=2"],
        ["0.1", "--seed=3"],
        ["0.01", "--seed=1"],
        ["0.01", "--seed=2"],
        ["0.01", "--seed=3"],
    ]
    assert [t.task_spec.envs for t in out[::3]] == [{"LR": "0.1", "FIXED": "x"}, {"LR": "0.01", "FIXED": "x"}]
    assert [t.labels for t in out[::3]] == [["sweep", "lr=0.1"], ["sweep", "lr=0.01"]]
    assert all(t.group_name == "lab" for t in out)
    # The template is untouched and every task is an independent object.
    assert tpl.task_spec.args[2] == "{lr}"
    out[0].task_spec.args.append("more")
    assert out[1].task_spec.args[-1] == "--seed=2"


def test_expanded_requests_serialise_like_hand_written_ones() -> None:
    [task] = expand_matrix(template(["echo", "{x}"]), {"x": ["1"]})
    hand = template(["echo", "1"])
    assert task.model_dump(mode="json") == hand.model_dump(mode="json")


def test_resources_take_placeholders() -> None:
    res = m.RemoteResourceDownload(
        remote_file=m.RemoteResource(Attachment=m.AttachmentRef(key="data/{shard}.bin")),
        local_path="in/{shard}",
    )
    tpl = SubmitTaskReq(group_name="g", task_spec=TaskSpec(args=["cat", "in/{shard}"], resources=[res]))
    out = expand_matrix(tpl, {"shard": ["a", "b"]})
    assert [(t.task_spec.resources[0].remote_file.Attachment.key, t.task_spec.resources[0].local_path)
            for t in out if t.task_spec.resources[0].remote_file.Attachment] == [
        ("data/a.bin", "in/a"),
        ("data/b.bin", "in/b"),
    ]  # fmt: skip


def test_literal_braces_and_shell_snippets() -> None:
    assert placeholders("awk '{print $1}' {{x}} {y}") == ["y"]
    assert substitute("{{x}} {y} {{", {"y": "1"}) == "{x} 1 {"
    [task] = expand_matrix(template(["sh", "-c", "awk '{print $1}' f{{x}} {n}"]), {"n": ["3"]})
    assert task.task_spec.args[2] == "awk '{print $1}' f{x} 3"


def test_labels_that_collapse_are_deduplicated() -> None:
    [task] = expand_matrix(template(["echo", "{x}"], labels=["v={x}", "v=1"]), {"x": ["1"]})
    assert task.labels == ["v=1"]


@pytest.mark.parametrize(
    ("tpl", "matrix", "needle"),
    [
        (template(["echo", "{lr}", "{sed}"]), {"lr": ["1"]}, "unknown placeholder {sed} in argument 3"),
        (template(["echo"], {"A": "{nope}"}), {"lr": ["1"]}, "unknown placeholder {nope} in env A"),
        (template(["echo", "{lr}"], labels=["x={y}"]), {"lr": ["1"]}, "unknown placeholder {y} in label"),
        (template(["echo", "{lr}"]), {"lr": []}, "has no values"),
        (template(["echo", "{lr}"]), {"lr": ["1", ""]}, "empty value"),
        (template(["echo", "{lr}"]), {"lr": ["1", "1"]}, "twice"),
        (template(["echo", "{lr}"]), {"lr": ["1"], "seed": ["1"]}, "seed not used"),
        (template(["echo", "x"]), {"a-b": ["1"]}, "is not a name"),
        (template(["echo"]), {}, "the matrix is empty"),
    ],
)
def test_invalid_sweeps_are_refused_with_a_precise_message(
    tpl: SubmitTaskReq, matrix: dict[str, list[str]], needle: str
) -> None:
    with pytest.raises(SweepError) as info:
        expand_matrix(tpl, matrix)
    assert needle in str(info.value)


def test_too_many_combinations_is_refused_before_expanding() -> None:
    tpl = template(["echo", "{a}", "{b}", "{c}"])
    big = {k: [str(i) for i in range(100)] for k in "abc"}  # a million: never built
    with pytest.raises(SweepError, match=r"1,000,000 tasks \(100 x 100 x 100\).*limit of 100,000"):
        expand_matrix(tpl, big)
    assert check_matrix(tpl, big, max_tasks=1_000_000) == 1_000_000
    small = {"a": ["1", "2"], "b": ["1"], "c": ["1", "2", "3"]}
    with pytest.raises(SweepError, match="limit of 5"):
        expand_matrix(tpl, small, max_tasks=5)
    assert len(expand_matrix(tpl, small, max_tasks=6)) == 6


def test_parse_matrix_items() -> None:
    assert parse_matrix(["lr=0.1,0.01", "seed=1"]) == {"lr": ["0.1", "0.01"], "seed": ["1"]}
    assert parse_matrix(["x=a=b,c"]) == {"x": ["a=b", "c"]}
    for bad, needle in [("lr", "expected KEY=v1"), ("lr=", "no values"), ("=1", "expected KEY=v1")]:
        with pytest.raises(SweepError, match=needle):
            parse_matrix([bad])
    with pytest.raises(SweepError, match="given twice"):
        parse_matrix(["a=1", "a=2"])
