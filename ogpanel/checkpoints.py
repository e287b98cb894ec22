"""Audit checkpoints: a keyed MAC over the chain's head, kept where the database cannot reach it.

The hash chain (audit.py) shows an event edited, deleted, inserted or reordered. It cannot show
events cut off its end, nor a chain rewritten whole, hashes and all: its hashes are not keyed,
so anyone who can write to the database can recompute them. A checkpoint records the head (the
last event's seq and hash) with an HMAC-SHA-256 under a key the database never holds
(OGPANEL_AUDIT_CHECKPOINT_KEYS or OGPANEL_AUDIT_CHECKPOINT_KEY_FILE, "id:base64key" entries like
the encryption keys), and is written outside the database: one JSON line appended to
OGPANEL_AUDIT_CHECKPOINT_FILE, and the same line logged (logger "ogpanel.checkpoints"), for
shipping off the host. `verify_audit --against FILE` then checks that the chain still holds
every head a checkpoint recorded: a missing tail or a rewrite shows.

- `write(reason=...)` writes one now (after a kill-switch sweep, say); it never raises, so a
  full disk cannot stop what called it.
- `write_if_due()` writes one when OGPANEL_AUDIT_CHECKPOINT_SECONDS have passed since this
  process last did and the head has moved: for a loop (the watcher's, or `manage.py
  audit_checkpoint --every`).
- Each write first checks that the chain still holds the file's last checkpoint, and logs an
  error if not: tampering shows at the next write, not only when someone runs verify_audit.

What this protects and what it does not: README, "Audit checkpoints".
"""

import fcntl
import hashlib
import hmac
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import BinaryIO, TypeGuard

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

from ogpanel import audit, vault
from ogpanel.models import AuditEvent

logger = logging.getLogger(__name__)

KIND = "ogpanel_audit_checkpoint"
VERSION = 1
_TAIL_BYTES = 4096  # a checkpoint line is ~400 bytes: the last one is in the file's last 4 KB
_clock = time.monotonic
_last_written: tuple[float, int] | None = None  # this process's last write: (clock, seq)


@cache
def _keys(configured: str, key_file: str) -> dict[str, bytes]:
    try:
        return vault.read_keys(configured, key_file, file_setting="OGPANEL_AUDIT_CHECKPOINT_KEY_FILE")
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"Audit checkpoint keys: {exc}") from None


def keys() -> dict[str, bytes]:
    """The checkpoint keys by id, newest first; empty when checkpoints are not configured."""
    return _keys(settings.OGPANEL_AUDIT_CHECKPOINT_KEYS, settings.OGPANEL_AUDIT_CHECKPOINT_KEY_FILE)


def _signed(record: dict) -> bytes:
    return json.dumps({k: v for k, v in record.items() if k != "mac"}, sort_keys=True, separators=(",", ":")).encode()


@sensitive_variables("key")
def _mac(key: bytes, record: dict) -> str:
    return hmac.new(key, _signed(record), hashlib.sha256).hexdigest()


def head() -> tuple[int, str, str]:
    """The chain's last event: seq, hash and time (0, the genesis hash and "" for an empty log)."""
    last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash", "at").first()
    return (last[0], last[1], audit.timestamp(last[2])) if last else (0, audit.GENESIS, "")


def write(*, reason: str) -> dict | None:
    """Checkpoint the chain's head now: append it to the file and log it. None if not configured or failed."""
    global _last_written
    try:
        configured = keys()
        if not configured:
            return None
        key_id = next(iter(configured))
        seq, head_hash, event_at = head()
        record = {
            "kind": KIND,
            "version": VERSION,
            "seq": seq,
            "hash": head_hash,
            "event_at": event_at,
            "written_at": audit.timestamp(datetime.now(UTC)),
            "reason": reason,
            "host": socket.gethostname(),
            "key": key_id,
        }
        record["mac"] = _mac(configured[key_id], record)
        line = json.dumps(record, sort_keys=True)
        _append(Path(settings.OGPANEL_AUDIT_CHECKPOINT_FILE), line)
    except Exception:  # a checkpoint is worth an error line, never the failure of what asked for it
        logger.exception("audit checkpoint not written")
        return None
    logger.info("audit checkpoint %s", line)
    _last_written = (_clock(), seq)
    return record


def write_if_due(*, reason: str = "periodic", interval: float | None = None) -> dict | None:
    """Write a checkpoint if `interval` seconds (OGPANEL_AUDIT_CHECKPOINT_SECONDS) have passed since this
    process's last one and the head has moved since. Cheap when not due: for a loop to call each round."""
    interval = settings.OGPANEL_AUDIT_CHECKPOINT_SECONDS if interval is None else interval
    if _last_written is not None and _clock() - _last_written[0] < interval:
        return None
    if _last_written is not None and head()[0] == _last_written[1]:
        return None
    return write(reason=reason)


def _append(path: Path, line: str) -> None:
    """One whole line at the end of the file, under an exclusive lock, on disk before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # panel processes and the watcher may share the file
        _check_still_held(file)
        file.seek(0, os.SEEK_END)
        file.write(line.encode() + b"\n")
        file.flush()
        os.fsync(file.fileno())


def _check_still_held(file: BinaryIO) -> None:
    """Log an error when the chain no longer holds the file's last checkpoint: the alarm goes off at the next write."""
    file.seek(max(0, file.seek(0, os.SEEK_END) - _TAIL_BYTES))
    lines = [line for line in file.read().decode(errors="replace").splitlines() if KIND in line]
    last = _parse(lines[-1]) if lines else None
    if not _readable(last):
        return
    problem = _problem(last, dict(AuditEvent.objects.filter(seq=last["seq"]).values_list("seq", "hash")), head()[0])
    if problem:
        logger.error("the audit log no longer matches its last checkpoint: %s", problem)


# --- checking a chain against checkpoints -----------------------------------------------------------


@dataclass(frozen=True)
class Report:
    checkpoints: int  # authentic checkpoints read
    latest: dict | None  # the one with the highest seq
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _parse(line: str) -> dict | None:
    """A checkpoint from a line of the file, or of a log that carries them (text before the JSON is skipped)."""
    try:
        record = json.loads(line[line.index("{") :])
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("kind") == KIND else None


def _readable(record: dict | None) -> TypeGuard[dict]:
    return record is not None and type(record.get("seq")) is int and isinstance(record.get("hash"), str)


def _problem(record: dict, hashes: dict[int, str], last_seq: int) -> str:
    seq, when = record["seq"], record.get("written_at", "?")
    if seq > last_seq:
        return (
            f"the checkpoint written at {when} recorded event #{seq}, but the log ends at #{last_seq}: "
            f"events #{last_seq + 1} to #{seq} are missing"
        )
    if seq == 0:
        return "" if record["hash"] == audit.GENESIS else f"the checkpoint written at {when} is not of an empty log"
    if hashes.get(seq) != record["hash"]:
        return (
            f"event #{seq} has hash {str(hashes.get(seq))[:16]}…, but the checkpoint written at {when} recorded "
            f"{record['hash'][:16]}…: the log up to #{seq} was rewritten"
        )
    return ""


def check(path: Path) -> Report:
    """Check the audit log against every checkpoint in the file at `path` (its chain checked apart, by verify)."""
    configured = keys()
    if not configured:
        raise ImproperlyConfigured("Checking against checkpoints needs their key: set OGPANEL_AUDIT_CHECKPOINT_KEYS.")
    problems: list[str] = []
    records: list[tuple[int, dict]] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if KIND not in line:
            continue  # another line of a log
        record = _parse(line)
        if not _readable(record):
            problems.append(f"line {number}: not a readable checkpoint")
        elif record.get("key") not in configured:
            problems.append(f"line {number}: made with key {record.get('key')!r}, which is not configured")
        elif not hmac.compare_digest(str(record.get("mac")), _mac(configured[record["key"]], record)):
            problems.append(f"line {number}: its MAC does not match: the checkpoint was altered or forged")
        else:
            records.append((number, record))
    last_seq = head()[0]
    seqs = sorted({record["seq"] for _, record in records})
    hashes: dict[int, str] = {}
    for start in range(0, len(seqs), 1000):
        hashes.update(AuditEvent.objects.filter(seq__in=seqs[start : start + 1000]).values_list("seq", "hash"))
    for number, record in records:
        if problem := _problem(record, hashes, last_seq):
            problems.append(f"line {number}: {problem}")
    latest = max((record for _, record in records), key=lambda record: record["seq"], default=None)
    return Report(len(records), latest, problems)
