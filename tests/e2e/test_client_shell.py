"""The interactive shell (``mito client -i``) through a real pseudo-terminal, against a live
coordinator: prompt, commands, errors that keep the shell alive, completion, help, history, exit."""

from __future__ import annotations

from pathlib import Path

import pexpect
import pytest

from tests.e2e.clientcli import client_argv, client_env
from tests.support.coordinator import LiveCoordinator

pytestmark = pytest.mark.e2e

PROMPT = "[mito::client]>"  # the trailing space is drawn as a cursor move


def test_interactive_shell(sqlite_coordinator: LiveCoordinator, tmp_path: Path) -> None:
    coord = sqlite_coordinator
    env = client_env(tmp_path)
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"  # pexpect does not answer cursor-position requests
    argv = [
        *client_argv(),
        "-c",
        coord.url,
        "--credential-path",
        str(tmp_path / "cred"),
        "-u",
        coord.admin_user,
        "-p",
        coord.admin_password,
        "-i",
    ]
    child = pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8", timeout=30, dimensions=(40, 200))
    try:
        child.expect_exact(PROMPT)
        child.sendline("auth")
        child.expect_exact(coord.admin_user)
        child.expect_exact(PROMPT)

        child.sendline("groups create shellgrp")
        child.expect_exact("Group shellgrp created")
        child.expect_exact(PROMPT)

        # Failures print one error line; the shell stays alive.
        child.sendline("groups create shellgrp")
        child.expect_exact("error: ")
        child.expect_exact(PROMPT)
        child.sendline("tasks get 67e55044-10b1-426f-9247-bb680e5fe0c8")
        child.expect("error: .*not found")
        child.expect_exact(PROMPT)
        child.sendline("tasks get not-a-uuid")
        child.expect_exact("invalid UUID")
        child.expect_exact(PROMPT)
        # Out-of-range numbers are usage errors, caught while parsing: no traceback, shell alive.
        child.sendline("tasks submit -p 99999999999999999999 -- echo")
        child.expect_exact("is not in the range -2147483648<=x<=2147483647")
        child.expect_exact(PROMPT)
        child.sendline("tasks change 67e55044-10b1-426f-9247-bb680e5fe0c8 -p 99999999999999999999")
        child.expect_exact("is not in the range")
        child.expect_exact(PROMPT)
        child.sendline('cmd echo "unbalanced')
        child.expect_exact("unbalanced quotes")
        child.expect_exact(PROMPT)

        child.sendline("tasks submit -g shellgrp -- echo hi")
        child.expect(r"Task submitted with id 1 in group shellgrp and a global uuid ([0-9a-f-]{36})")
        uuid = child.match.group(1)
        child.expect_exact(PROMPT)

        # Tab completes group names (the user's groups, fetched once), choice values and the
        # uuids of tasks this session has seen. A completion lands asynchronously, so each Tab
        # waits for its inserted text before typing on; each line then proves it by running
        # (the partial words alone would be refused).
        child.send("groups get s\t")
        child.expect_exact("hellgrp")
        child.sendline("")
        child.expect_exact("members")
        child.expect_exact(PROMPT)
        child.send("tasks query -g s\t")
        child.expect_exact("hellgrp")
        child.send(" -s rea\t")
        child.expect_exact("dy")
        child.send(" --output y\t")
        child.expect_exact("aml")
        child.sendline("")
        child.expect_exact(f"uuid: {uuid}")
        child.expect_exact("group_name: shellgrp")
        child.expect_exact(PROMPT)
        child.send("tasks get \t")
        child.expect_exact(uuid)
        child.sendline(" --json")
        child.expect_exact('"group_name": "shellgrp"')
        child.expect_exact(PROMPT)

        # Tab completion of commands and flags, derived from the click tree.
        child.send("wor\t")
        child.expect_exact("workers")
        child.send(" que\t")
        child.expect_exact("query")
        child.send(" --cou\t")
        child.expect_exact("--count")
        child.sendline("")
        child.expect(r"\d+\r?\n")
        child.expect_exact(PROMPT)

        # Ctrl-C clears the line.
        child.send("tasks garbage")
        child.sendcontrol("c")
        child.expect_exact(PROMPT)

        child.sendline("help tasks")
        child.expect_exact("submit-many")
        child.expect_exact(PROMPT)
        child.sendline("help")
        child.expect_exact("workers")
        child.expect_exact(PROMPT)

        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    history = (tmp_path / "cache" / "mitosis" / "client-history").read_text()
    assert "groups create shellgrp" in history and "tasks submit -g shellgrp -- echo hi" in history
    assert "+tasks query -g shellgrp -s ready --output yaml\n" in history  # completed as shown


def _spawn(coord: LiveCoordinator, home: Path) -> pexpect.spawn:
    env = client_env(home)
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"
    argv = [*client_argv(), "-c", coord.url, "--credential-path", str(home / "cred"), "-i"]
    return pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8", timeout=30, dimensions=(40, 200))


def test_ctrl_d_leaves_and_history_carries_over(sqlite_coordinator: LiveCoordinator, tmp_path: Path) -> None:
    child = _spawn(sqlite_coordinator, tmp_path)
    try:
        child.expect_exact(PROMPT)
        child.sendline("cmd -- echo shell-says-$((6*7))")
        child.expect_exact("shell-says-42")  # the output, not the typed line
        child.expect_exact(PROMPT)
        # A key typed while the shell is still handing the terminal back from the command (cooked
        # mode, before the prompt reads raw keys) is eaten by the line discipline: type it again.
        for _ in range(3):
            child.sendcontrol("d")
            if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=5) == 0:
                break
        else:
            raise AssertionError(f"Ctrl-D did not end the shell: {child.before!r}")
    finally:
        child.close()
    assert child.exitstatus == 0

    # A new session: Up recalls the last command of the previous one, Enter runs it, quit leaves.
    child = _spawn(sqlite_coordinator, tmp_path)
    try:
        child.expect_exact(PROMPT)
        child.send("\x1b[A")  # the Up arrow
        child.expect_exact("cmd -- echo shell-says-$((6*7))")
        child.send("\r")
        child.expect_exact("shell-says-42")
        child.expect_exact(PROMPT)
        child.sendline("quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    history = (tmp_path / "cache" / "mitosis" / "client-history").read_text()
    # The recalled line ran again; prompt_toolkit does not store it twice in a row.
    assert history.count("+cmd -- echo shell-says-$((6*7))") == 1 and history.endswith("+quit\n")
