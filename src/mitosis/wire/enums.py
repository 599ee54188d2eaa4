"""Enumerations of the 0.6.8 wire contract.

Every enum travels as a string in JSON (the Rust variant name) and is stored as an integer in the
database. Input accepts the aliases listed in behavior.md §2.1; output always uses the canonical
name. ``code`` / ``from_code`` convert to and from the stored integer.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Self


class _WireEnum(StrEnum):
    """A string enum with integer storage codes and input aliases."""

    @classmethod
    def _codes(cls) -> dict[str, int]:
        raise NotImplementedError

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {}

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, str):
            canonical = cls._aliases().get(value)
            if canonical is not None:
                return cls(canonical)
        return None

    @property
    def code(self) -> int:
        return self._codes()[self.value]

    @classmethod
    def from_code(cls, code: int) -> Self:
        for name, value in cls._codes().items():
            if value == code:
                return cls(name)
        raise ValueError(f"{code} is not a valid {cls.__name__} code")

    def __str__(self) -> str:
        return str(self.value)


def _case_aliases(*names: str) -> dict[str, str]:
    """`read`/`READ` style aliases for each canonical name."""
    out: dict[str, str] = {}
    for name in names:
        out[name.lower()] = name
        out[name.upper()] = name
    return out


class TaskState(_WireEnum):
    Pending = "Pending"
    Ready = "Ready"
    Running = "Running"
    Finished = "Finished"
    Cancelled = "Cancelled"
    Unknown = "Unknown"

    @classmethod
    def _codes(cls) -> dict[str, int]:
        return _TASK_STATE_CODES

    @property
    def is_final(self) -> bool:
        return self in (TaskState.Finished, TaskState.Cancelled)


_TASK_STATE_CODES = {"Pending": 0, "Ready": 1, "Running": 2, "Finished": 3, "Cancelled": 4, "Unknown": 5}


class TaskExecState(_WireEnum):
    WorkerExited = "WorkerExited"
    FetchResource = "FetchResource"
    FetchResourceFinished = "FetchResourceFinished"
    FetchResourceError = "FetchResourceError"
    FetchResourceTimeout = "FetchResourceTimeout"
    FetchResourceNotFound = "FetchResourceNotFound"
    FetchResourceForbidden = "FetchResourceForbidden"
    Watch = "Watch"
    WatchFinished = "WatchFinished"
    WatchTimeout = "WatchTimeout"
    ExecPending = "ExecPending"
    ExecSpawned = "ExecSpawned"
    ExecFinished = "ExecFinished"
    ExecTimeout = "ExecTimeout"
    UploadResult = "UploadResult"
    UploadFinishedResult = "UploadFinishedResult"
    UploadCancelledResult = "UploadCancelledResult"
    UploadResultFinished = "UploadResultFinished"
    UploadResultTimeout = "UploadResultTimeout"
    TaskCommitted = "TaskCommitted"
    Unknown = "Unknown"

    @classmethod
    def _codes(cls) -> dict[str, int]:
        return _EXEC_STATE_CODES

    @classmethod
    def from_code_lenient(cls, code: int) -> TaskExecState:
        """Redis carries integers; any unknown integer means ``Unknown`` (as 0.6.8)."""
        try:
            return cls.from_code(code)
        except ValueError:
            return cls.Unknown


_EXEC_STATE_CODES = {
    "WorkerExited": -1,
    "FetchResource": 1,
    "FetchResourceFinished": 2,
    "FetchResourceError": 3,
    "FetchResourceTimeout": 4,
    "FetchResourceNotFound": 5,
    "FetchResourceForbidden": 6,
    "Watch": 7,
    "WatchFinished": 8,
    "WatchTimeout": 9,
    "ExecPending": 10,
    "ExecSpawned": 11,
    "ExecFinished": 12,
    "ExecTimeout": 13,
    "UploadResult": 14,
    "UploadFinishedResult": 15,
    "UploadCancelledResult": 16,
    "UploadResultFinished": 17,
    "UploadResultTimeout": 18,
    "TaskCommitted": 19,
    "Unknown": -99,
}


class UserState(_WireEnum):
    Active = "Active"
    Locked = "Locked"
    Deleted = "Deleted"

    @classmethod
    def _codes(cls) -> dict[str, int]:
        return {"Active": 0, "Locked": 1, "Deleted": 2}


class GroupState(_WireEnum):
    Active = "Active"
    Locked = "Locked"
    Deleted = "Deleted"

    @classmethod
    def _codes(cls) -> dict[str, int]:
        return {"Active": 0, "Locked": 1, "Deleted": 2}


class WorkerState(_WireEnum):
    Normal = "Normal"
    GracefulShutdown = "GracefulShutdown"

    @classmethod
    def _codes(cls) -> dict[str, int]:
        return {"Normal": 0, "GracefulShutdown": 1}


class Role(_WireEnum):
    """UserGroupRole and GroupWorkerRole share names, codes and ordering (Read < Write < Admin)."""

    Read = "Read"
    Write = "Write"
    Admin = "Admin"

    @classmethod
    def _codes(cls) -> dict[str, int]:
        return {"Read": 0, "Write": 1, "Admin": 2}

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return _case_aliases("Read", "Write", "Admin")

    def at_least(self, other: Role) -> bool:
        return self.code >= other.code


UserGroupRole = Role
GroupWorkerRole = Role


class ArtifactContentType(_WireEnum):
    result = "result"
    exec_log = "exec-log"
    std_log = "std-log"

    @classmethod
    def _codes(cls) -> dict[str, int]:
        return {"result": 0, "exec-log": 1, "std-log": 2}

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return _ARTIFACT_ALIASES

    @property
    def file_name(self) -> str:
        return f"{self.value}.tar.gz"


_ARTIFACT_ALIASES = {
    **{a: "result" for a in ("Result", "RESULT")},
    **{a: "exec-log" for a in ("exec", "EXEC", "Exec", "execlog", "EXECLOG", "Execlog", "ExecLog")},
    **{
        a: "std-log"
        for a in ("std", "STD", "Std", "stdlog", "Stdlog", "STDLOG", "terminal", "Terminal", "TERMINAL")
    },
}


class AttachmentContentType(_WireEnum):
    NoSet = "NoSet"

    @classmethod
    def _codes(cls) -> dict[str, int]:
        return {"NoSet": 0}

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        # pynetmito 0.2.7 spells it NotSet (DECISIONS.md C1): accept both, emit NoSet.
        return {"NotSet": "NoSet"}


class TaskResultMessage(_WireEnum):
    FetchResourceTimeout = "FetchResourceTimeout"
    ExecTimeout = "ExecTimeout"
    UploadResultTimeout = "UploadResultTimeout"
    ResourceNotFound = "ResourceNotFound"
    ResourceForbidden = "ResourceForbidden"
    WatchTimeout = "WatchTimeout"
    UserCancellation = "UserCancellation"
    SubmitNewTaskFailed = "SubmitNewTaskFailed"

    @classmethod
    def _codes(cls) -> dict[str, int]:
        return {name: i for i, name in enumerate(cls.__members__)}


class WorkerShutdownOp(_WireEnum):
    Graceful = "Graceful"
    Force = "Force"

    @classmethod
    def _codes(cls) -> dict[str, int]:
        return {"Graceful": 0, "Force": 1}

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {"graceful": "Graceful", "force": "Force"}


def enum_names(enum: type[Enum]) -> str:
    """Comma separated accepted names, for error messages."""
    return ", ".join(str(m.value) for m in enum)
