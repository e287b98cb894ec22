"""Injected faults: the ways a real exchange or network misbehaves, on demand."""

import threading
from dataclasses import asdict, dataclass
from typing import Any

# soft_error: a 2xx (200 unless `status` says) whose body is an error, a refusal in disguise (§11).
# ignore: 200 {} and nothing done, so a trigger can leave a group active once.
KINDS = ("latency", "error", "rate_limit", "drop", "hang", "garbage", "ignore", "soft_error")
DEFAULT_ERROR_STATUS = 500
DEFAULT_HANG_SECONDS = 30.0


@dataclass
class Fault:
    """One fault rule. Unset matchers match anything.

    "ignore" answers 200 {} without doing anything: with `times=1` on a group's trigger path it
    leaves that group active once, as a trigger lost inside the exchange would.

    `path` is a substring of the path after `/trade-api/v2`; `subaccount` is
    compared with the request's `subaccount` query parameter, so it never
    matches a request without one (create carries its subaccount in the body).
    """

    id: int
    kind: str
    path: str | None = None
    method: str | None = None
    subaccount: int | None = None
    key_id: str | None = None
    status: int | None = None
    seconds: float | None = None
    times: int | None = None  # matching requests left; None: until cleared

    def matches(self, method: str, path: str, subaccount: str | None, key_id: str | None) -> bool:
        return (
            (self.path is None or self.path in path)
            and (self.method is None or self.method == method.upper())
            and (self.subaccount is None or str(self.subaccount) == subaccount)
            and (self.key_id is None or self.key_id == key_id)
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1
        self._lock = threading.Lock()

    def add(
        self,
        kind: str,
        *,
        path: str | None = None,
        method: str | None = None,
        subaccount: int | None = None,
        key_id: str | None = None,
        status: int | None = None,
        seconds: float | None = None,
        times: int | None = None,
    ) -> int:
        """Register a fault and return its id; raises ValueError for a malformed one."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        for name, value in (("path", path), ("method", method), ("key_id", key_id)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
        for name, number in (("subaccount", subaccount), ("status", status), ("times", times)):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
                raise ValueError(f"{name} must be a whole number")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0):
            raise ValueError("seconds must be a number >= 0")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1")
        if kind == "latency" and seconds is None:
            raise ValueError("a latency fault needs seconds")
        if kind == "error":
            status = DEFAULT_ERROR_STATUS if status is None else status
            if not 400 <= status <= 599:
                raise ValueError("status must be between 400 and 599")
        if kind == "soft_error" and status is not None and not 200 <= status <= 299:
            raise ValueError("a soft_error answers with a 2xx status")
        if kind == "hang" and seconds is None:
            seconds = DEFAULT_HANG_SECONDS
        with self._lock:
            fault = Fault(
                id=self._next_id,
                kind=kind,
                path=path,
                method=method.upper() if method else None,
                subaccount=subaccount,
                key_id=key_id,
                status=status,
                seconds=None if seconds is None else float(seconds),
                times=times,
            )
            self._next_id += 1
            self._faults.append(fault)
            return fault.id

    def take(self, method: str, path: str, subaccount: str | None, key_id: str | None) -> tuple[float, Fault | None]:
        """Consume the faults matching a request.

        Returns the added latency of every matching latency fault and the
        oldest matching fault of another kind, which decides the answer.
        """
        latency = 0.0
        decisive = None
        with self._lock:
            for fault in self._faults[:]:
                if not fault.matches(method, path, subaccount, key_id):
                    continue
                if fault.kind == "latency":
                    latency += fault.seconds or 0.0
                elif decisive is None:
                    decisive = fault
                else:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
        return latency, decisive

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.as_dict() for fault in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
