"""The simulator's log of /trade-api/v2 requests: what tests read back as `sim.requests`."""

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestRecord:
    """One /trade-api/v2 request. `path` is the full URL path (with /trade-api/v2, without the query).

    `status` is None while the request is in flight and for one that was
    dropped or hung up on.
    """

    method: str
    path: str
    query: dict[str, str]
    status: int | None
    key_id: str | None
    # The body as text (undecodable bytes replaced); left out of comparisons, so records
    # written out by hand in tests need not spell it.
    body: str = field(default="", compare=False)


@dataclass
class _LogEntry:
    method: str
    path: str
    query: dict[str, str]
    key_id: str | None
    status: int | None = None
    body: str = ""


@dataclass
class RequestLog:
    _entries: list[_LogEntry] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, method: str, path: str, query: dict[str, str], key_id: str | None, body: bytes = b"") -> _LogEntry:
        # Logged on arrival, so a request still hanging is already visible.
        entry = _LogEntry(method, path, query, key_id, body=body.decode("utf-8", "replace"))
        with self._lock:
            self._entries.append(entry)
        return entry

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return [RequestRecord(e.method, e.path, dict(e.query), e.status, e.key_id, e.body) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries = []
