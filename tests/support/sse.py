"""A Server-Sent Events reader for tests and benchmarks: one background thread per stream.

It records every message (``id``, ``event``, parsed ``data``) and comment line, so a test can wait
for the stream to be established (the coordinator's ``: connected`` comment) before it acts.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Message:
    id: str | None
    event: str
    data: Any
    received: float


class SseReader:
    def __init__(self, base_url: str, token: str, params: Any = None, headers: dict[str, str] | None = None):
        self.messages: queue.Queue[Message] = queue.Queue()
        self.comments: list[str] = []
        self.connected = threading.Event()
        self.live = threading.Event()
        self.status: int | None = None
        self.body: bytes = b""
        self._client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}", **(headers or {})},
            timeout=httpx.Timeout(10, read=None),
        )
        self._params = params
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._client.stream("GET", "/events", params=self._params) as r:
                self._response = r
                self.status = r.status_code
                if r.status_code != 200:
                    self.body = r.read()
                    self.connected.set()
                    return
                fields: dict[str, str] = {}
                for line in r.iter_lines():
                    if line == "":
                        if "data" in fields:
                            self.messages.put(
                                Message(
                                    fields.get("id"),
                                    fields.get("event", "message"),
                                    json.loads(fields["data"]),
                                    time.perf_counter(),
                                )
                            )
                        fields = {}
                        continue
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                        if line.startswith(": connected"):
                            self.connected.set()
                        elif line.startswith(": live"):
                            self.live.set()
                        continue
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except Exception:
            pass
        finally:
            self.connected.set()

    def wait_connected(self, timeout: float = 10) -> None:
        assert self.connected.wait(timeout), "event stream did not connect"

    def get(self, timeout: float = 10) -> Message:
        return self.messages.get(timeout=timeout)

    def take(self, n: int, timeout: float = 10) -> list[Message]:
        deadline = time.monotonic() + timeout
        return [self.get(max(deadline - time.monotonic(), 0.01)) for _ in range(n)]

    def quiet(self, wait: float = 0.5) -> list[Message]:
        """Messages that arrive within ``wait`` seconds (to assert that none do)."""
        time.sleep(wait)
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def replay(self, timeout: float = 15) -> list[Message]:
        """Every message the coordinator replayed, up to its ``: live`` marker (nothing after it).

        Messages are queued by the reading thread before it reads the marker, so once the marker
        is seen the whole replay is in the queue: no guessing from pauses.
        """
        assert self.live.wait(timeout), "the event stream never caught up (no ': live' marker)"
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        # A blocked read in the thread only returns once the socket itself is shut down.
        if self._response is not None:
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self._client.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SseReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
