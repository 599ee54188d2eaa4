"""The Mitosis client: the Python SDK (sync and async faces over one sans-IO core), its errors,
the credential store, and the ``mito client`` command line (in :mod:`mitosis.client.commands`)."""

from mitosis.client.errors import (
    AuthError,
    AuthExpiredError,
    ConflictError,
    ConnectionFailed,
    ForbiddenError,
    InvalidRequestError,
    MissingCredentials,
    MitoError,
    NotFoundError,
    QuotaExceededError,
    ServerError,
    SweepError,
    SweepInterrupted,
    WaitTimeout,
)
from mitosis.client.sdk import AsyncMitoClient, MitoClient
from mitosis.client.sweep import expand_matrix
from mitosis.wire.models import SubmitErr, SubmitOk, SubmitTaskReq, TaskSpec

__all__ = [
    "AsyncMitoClient",
    "AuthError",
    "AuthExpiredError",
    "ConflictError",
    "ConnectionFailed",
    "ForbiddenError",
    "InvalidRequestError",
    "MissingCredentials",
    "MitoClient",
    "MitoError",
    "NotFoundError",
    "QuotaExceededError",
    "ServerError",
    "SubmitErr",
    "SubmitOk",
    "SubmitTaskReq",
    "SweepError",
    "SweepInterrupted",
    "TaskSpec",
    "WaitTimeout",
    "expand_matrix",
]
