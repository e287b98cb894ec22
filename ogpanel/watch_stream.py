"""The trip watch's stream threads: one per credential, following order_group_updates.

A thread only ever tells the watcher what it heard (`Watcher.notice`): an update (its kind, for
trips and resets polling alone cannot see), a reconnect or a gap. The watcher then reads the
affected subaccounts again; the listing stays the source of every event.
"""

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from ogpanel import exchange
from ogpanel.kalshi import KalshiError, OrderGroupStream, OrderGroupUpdate, StreamGap
from ogpanel.models import Credential

logger = logging.getLogger("ogpanel.watcher")

STREAM_BACKOFF_FIRST, STREAM_BACKOFF_MAX = 1.0, 60.0
STREAM_READ_SLICE = 0.5  # how long a stream thread blocks before checking whether it should stop


class Listener(Protocol):
    def notice(self, credential_pk: int, update: OrderGroupUpdate | None = None) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StreamState:
    state: str
    since: datetime = field(default_factory=_now)
    error: str = ""

    def as_json(self) -> dict[str, str]:
        return {"state": self.state, "since": self.since.isoformat(), "error": self.error}


def version(credential: Credential) -> tuple[str, str, str]:
    return credential.key_id, credential.base_url, credential.private_key_encrypted


class Follower:
    """A thread following one credential's order_group_updates; it only ever wakes the watcher."""

    def __init__(self, listener: Listener, credential: Credential):
        self.listener, self.credential_pk, self.label = listener, credential.pk, credential.label
        self.version = version(credential)
        self.state = StreamState("connecting")
        self._stop = threading.Event()
        self._stream: OrderGroupStream | None = None
        self._thread: threading.Thread | None = None
        try:
            self._stream = exchange.stream_for(credential)
        except KalshiError as exc:  # CredentialUnusable among them
            # Nothing to follow with; polling goes on (and reports the same credential's trouble per subaccount).
            self.state = StreamState("off", error=f"cannot use this credential's key or URL: {type(exc).__name__}")
            logger.error("trip watch: no stream for credential %s: %s", self.label, self.state.error)
            return
        self._thread = threading.Thread(
            target=self._run, args=(self._stream,), name=f"ogpanel-stream-{credential.pk}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._stream is not None:
            self._stream.close()  # unblocks a waiting next_update
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, stream: OrderGroupStream) -> None:
        backoff = STREAM_BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                stream.connect()
                self.state = StreamState("connected")
                backoff = STREAM_BACKOFF_FIRST
                # Anything may have changed while nobody was listening: read it all again.
                self.listener.notice(self.credential_pk)
                while not self._stop.is_set():
                    update = stream.next_update(STREAM_READ_SLICE)
                    if update is not None:
                        self.listener.notice(self.credential_pk, update)
            except KalshiError as exc:
                if self._stop.is_set():
                    break
                self.state = StreamState("reconnecting", error=exc.operator_message)
                logger.warning(
                    "trip watch: stream of credential %s: %s; reconnecting in %.0f s",
                    self.label,
                    exc.operator_message,
                    backoff,
                )
                if isinstance(exc, StreamGap):  # updates were lost: read now, not only after reconnecting
                    self.listener.notice(self.credential_pk)
            finally:
                stream.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, STREAM_BACKOFF_MAX)
