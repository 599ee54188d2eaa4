"""The interactive client shell (``mito client -i``, behavior.md §9.3), built on prompt_toolkit.

Each line is split shell-style and run through the same click command tree as ``mito client``
(without the prefix and the global options), in the same session, so the token obtained once is
reused. Completion of commands, flags and choice values is derived from that tree; group names
(the user's groups) and task uuids (those this session submitted or listed, and the newest 50 of
the user's group) are fetched at most once per session. History lives in
``<user cache dir>/mitosis/client-history`` (at most 1000 entries). A failing command prints its
error and the shell carries on; Ctrl-C clears the line; Ctrl-D, ``exit``, ``quit`` or a successful
``admin shutdown`` leave.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path

import click
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory

from mitosis.client.commands import EXPECTED_ERRORS, Session, register, report_error
from mitosis.client.commands.params import UuidType
from mitosis.client.errors import MitoError
from mitosis.client.sdk import MitoClient
from mitosis.config import user_cache_dir
from mitosis.wire import models as m

PROMPT = "[mito::client]> "
HISTORY_LIMIT = 1000
SHELL_WORDS = ("help", "exit", "quit")


def history_path() -> Path:
    return user_cache_dir() / "client-history"


def build_root() -> click.Group:
    root = click.Group(name="", help="Commands of the interactive client shell.")
    register(root)
    return root


def _trim_history(path: Path) -> None:
    """Keep the newest entries only; FileHistory appends forever otherwise."""
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    # FileHistory writes each entry as a "# <timestamp>" line followed by "+<line>" lines.
    entries = text.split("\n\n# ")
    if len(entries) > HISTORY_LIMIT:
        kept = entries[-HISTORY_LIMIT:]
        path.write_text("\n# " + "\n\n# ".join(kept), encoding="utf-8")


def _resolve(root: click.Group, words: list[str]) -> tuple[click.Command, list[str]]:
    """The deepest command named by ``words`` and the path of names leading to it."""
    cmd: click.Command = root
    path: list[str] = []
    for word in words:
        if word.startswith("-"):
            continue
        if isinstance(cmd, click.Group):
            sub = cmd.commands.get(word)
            if sub is None:
                break
            cmd = sub
            path.append(word)
        else:
            break
    return cmd, path


class Suggestions:
    """Group names and task uuids for completion, asked of the coordinator at most once per shell
    session (and never by prompting for a password: a shell that cannot log in quietly completes
    only what it has seen)."""

    TASK_QUERY_LIMIT = 50

    def __init__(self, session: Session) -> None:
        self.session = session
        self._groups: list[str] | None = None
        self._tasks: list[str] | None = None

    def _client(self) -> MitoClient | None:
        return self.session.quiet_client()

    def groups(self) -> list[str]:
        if self._groups is None and (client := self._client()) is not None:
            try:
                self._groups = list(client.my_groups().groups)
            except MitoError:
                pass
        return sorted({*(self._groups or []), *self.session.seen_groups})

    def task_uuids(self) -> list[str]:
        """The uuids this session submitted or listed (newest first), then the newest of a query."""
        if self._tasks is None and (client := self._client()) is not None:
            try:
                resp = client.query_tasks(m.TasksQueryReq(limit=self.TASK_QUERY_LIMIT))
                self._tasks = [str(t.uuid) for t in resp.tasks]
            except MitoError:
                pass
        return list(dict.fromkeys([*reversed(self.session.seen_tasks), *(self._tasks or [])]))


GROUP_PARAMS = ("group", "group_name")
TASK_PARAMS = ("uuid", "uuids")


def _takes_group(path: list[str], param: click.Parameter) -> bool:
    return param.name in GROUP_PARAMS and path != ["groups", "create"]  # a new name completes nothing


def _takes_task(path: list[str], param: click.Parameter) -> bool:
    # Worker commands take worker uuids; `--reporter-uuid` names a worker too.
    tasks_tree = path[:1] == ["tasks"] or path[:2] == ["admin", "tasks"]
    return tasks_tree and param.name in TASK_PARAMS and isinstance(param.type, UuidType)


def _value_param(cmd: click.Command, rest: list[str]) -> click.Parameter | None:
    """The parameter the next word is a value of: the option just typed, else the positional
    argument at that position; None after ``--`` (the words of a task's command)."""
    options = {o: p for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    expecting: click.Option | None = None
    position = 0
    for word in rest:
        if expecting is not None:
            expecting = None
        elif word == "--":
            return None
        elif word.startswith("-") and len(word) > 1:
            opt = options.get(word)
            if opt is not None and not opt.is_flag and not opt.count:
                expecting = opt
        else:
            position += 1
    if expecting is not None:
        return expecting
    for arg in (p for p in cmd.params if isinstance(p, click.Argument)):
        if arg.nargs < 0 or position < arg.nargs:
            return arg
        position -= arg.nargs
    return None


def _after(words: list[str], path: list[str]) -> list[str]:
    """The words that follow the command names of ``path`` (which :func:`_resolve` found)."""
    consumed = found = 0
    for index, word in enumerate(words):
        if found < len(path) and word == path[found]:
            found += 1
            consumed = index + 1
        elif not word.startswith("-"):
            break
    return words[consumed:]


class ClickCompleter(Completer):
    """Completes by walking the click tree: subcommands, flags, choice values (``--output``,
    ``-s`` states, content types), and with ``suggestions`` group names and task uuids."""

    def __init__(self, root: click.Group, suggestions: Suggestions | None = None) -> None:
        self.root = root
        self.suggestions = suggestions

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        partial = "" if not text or text[-1].isspace() else (words.pop() if words else "")
        if words and words[0] == "help":
            target, _ = _resolve(self.root, words[1:])
            yield from self._matching(
                sorted(target.commands) if isinstance(target, click.Group) else [], partial
            )
            return
        cmd, path = _resolve(self.root, words)
        try:
            candidates = self._candidates(cmd, path, _after(words, path), partial, top=not words)
        except Exception:  # a completion never breaks the prompt
            candidates = []
        yield from self._matching(candidates, partial)

    @staticmethod
    def _matching(candidates: Iterable[str], partial: str) -> Iterable[Completion]:
        for cand in dict.fromkeys(candidates):
            # Case-insensitive like click's own matching (`admin users state bob L` -> locked).
            if cand.lower().startswith(partial.lower()):
                yield Completion(cand, start_position=-len(partial))

    def _candidates(
        self, cmd: click.Command, path: list[str], rest: list[str], partial: str, *, top: bool
    ) -> list[str]:
        if isinstance(cmd, click.Group):
            if partial.startswith("-"):
                return ["--help"]
            return [*sorted(cmd.commands), *(SHELL_WORDS if top else ())]
        param = _value_param(cmd, rest)
        if partial.startswith("-") and not isinstance(param, click.Option):
            flags = [
                o for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)
            ]
            return [*flags, "--help"]
        if param is None:
            return []
        if self.suggestions is not None and _takes_group(path, param):
            return self.suggestions.groups()
        if self.suggestions is not None and _takes_task(path, param):
            return self.suggestions.task_uuids()
        ctx = click.Context(cmd, info_name=path[-1] if path else None)
        return [item.value for item in param.shell_complete(ctx, partial) if item.type == "plain"]


def show_help(root: click.Group, names: list[str]) -> None:
    cmd, path = _resolve(root, names)
    if len(path) != len(names):
        click.echo(f"error: no command {' '.join(names)!r}; type `help` for the list", err=True)
        return
    ctx = click.Context(root, info_name="")
    group: click.Command = root
    for name in path:
        assert isinstance(group, click.Group)
        group = group.commands[name]
        ctx = click.Context(group, info_name=name, parent=ctx)
    click.echo(cmd.get_help(ctx))
    if not names:
        click.echo("\nShell: help [COMMAND...], exit, quit (or Ctrl-D).")


def run_line(root: click.Group, session: Session, argv: list[str]) -> None:
    """Run one command line; every failure is reported and swallowed so the shell stays alive."""
    try:
        with root.make_context("", argv, obj=session) as ctx:
            root.invoke(ctx)
    except click.exceptions.Exit:
        pass
    except click.ClickException as exc:
        exc.show()
    except click.Abort:
        click.echo("aborted", err=True)
    except EXPECTED_ERRORS as exc:
        report_error(exc)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
    except Exception as exc:  # nothing a command does may end the shell
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        click.echo(f"error: unexpected {type(exc).__name__}{': ' + first if first else ''}", err=True)


def run_shell(session: Session) -> None:
    """The read-eval-print loop."""
    root = build_root()
    hist = history_path()
    hist.parent.mkdir(parents=True, exist_ok=True)
    _trim_history(hist)
    prompt: PromptSession[str] = PromptSession(
        history=FileHistory(str(hist)),
        completer=ClickCompleter(root, Suggestions(session)),
        complete_while_typing=False,
    )
    while not session.quit_requested:
        try:
            line = prompt.prompt(PROMPT)
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            click.echo(f"error: {exc} (unbalanced quotes?)", err=True)
            continue
        if not argv:
            continue
        if argv[0] in ("exit", "quit"):
            break
        if argv[0] == "help":
            show_help(root, argv[1:])
            continue
        run_line(root, session, argv)
