"""gunicorn's settings, read from the working directory (the Dockerfile's CMD; benchmarks/common.py's Gunicorn).

Metrics across workers: each worker is a process with counts of its own, so prometheus-client's
multiprocess mode shares them. Every worker writes its series to files in PROMETHEUS_MULTIPROC_DIR
(a fresh temporary directory unless set), and /metrics, whichever worker answers it, adds up all
the files, those of workers that have since exited included, so counters never go backwards
when gunicorn replaces a worker. An earlier run's files would be counted again, so they go at start.

Access log lines hold what a client sent (the query string, the referer, the user agent); a key
pasted into any of them must not reach the log (ogpanel/redaction.py).
"""

import os
import shutil
import tempfile
from pathlib import Path

from gunicorn.glogging import Logger

_created: str | None = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Set before any worker imports prometheus-client, which picks its mode on import.
    _created = tempfile.mkdtemp(prefix="ogpanel-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _created
_metrics_directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
_METRIC_FILES = ("counter_*.db", "gauge_*.db", "histogram_*.db", "summary_*.db")  # prometheus-client's, only

# The panel logs one line per request itself with JSON logs (OGPANEL_LOG_REQUESTS); gunicorn's would repeat it.
accesslog = None if os.environ.get("OGPANEL_LOG_FORMAT") == "json" else "-"


def on_starting(server: object) -> None:
    _metrics_directory.mkdir(parents=True, exist_ok=True)
    for pattern in _METRIC_FILES:
        for stale in _metrics_directory.glob(pattern):
            stale.unlink()


def child_exit(server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    # Its live gauges (sweeps running) go; its counters stay in the sums.
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    if _created is not None:  # only the directory made above, never one the environment named
        shutil.rmtree(_created, ignore_errors=True)


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time) -> dict:
        from ogpanel.redaction import redact  # imported once the app (and Django's settings) is loaded

        atoms = super().atoms(resp, req, environ, request_time)
        return {name: redact(value) if isinstance(value, str) else value for name, value in atoms.items()}


logger_class = RedactingLogger
