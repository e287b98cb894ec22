"""Every benchmark at its smallest size (--quick), side by side: does each still run and print its table?

    .venv/bin/python benchmarks/quick.py                      # each on a fresh SQLite database
    .venv/bin/python benchmarks/quick.py --database-url postgresql://postgres@127.0.0.1:5432/ogpanel_bench_quick

With a PostgreSQL URL each script gets a database of its own, named after the URL's with the
script's name appended (ogpanel_bench_quick_load, ...), so they can run at once. Nothing here
judges a timing (docs/performance.md has the numbers); CI runs this on PostgreSQL
(`make bench-quick`) and tests/test_benchmarks.py on SQLite.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
# Each script, and a line of the table it ends with.
SCRIPTS = {
    "dashboard_fanout.py": "sequential / dashboard",
    "action_overhead.py": "added by the panel",
    "killswitch_ratelimit.py": "429s from the simulator",
    "load.py": "upstream 429s",
    "audit_scale.py": "CSV export",
    "trip_latency.py": "/live (the change stamp)",
}
TIMEOUT = 300  # seconds for all of them together, far above what they take on a loaded 2-core machine


@dataclass(frozen=True)
class Run:
    script: str
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        """Exited 0 and printed its results table."""
        return self.returncode == 0 and SCRIPTS[self.script] in self.output and "\n|---" in self.output


def database_url_for(script: str, postgres_url: str) -> str:
    parts = urlsplit(postgres_url)
    name = f"{unquote(parts.path.lstrip('/'))}_{Path(script).stem}"
    return parts._replace(path=f"/{name}").geturl()


def run_all(postgres_url: str | None = None) -> list[Run]:
    """Run every script with --quick at once: on fresh SQLite databases, or each on its own PostgreSQL database."""
    processes = {}
    for script in SCRIPTS:
        command = [sys.executable, str(ROOT / "benchmarks" / script), "--quick"]
        if postgres_url:
            command += ["--database-url", database_url_for(script, postgres_url)]
        processes[script] = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    outputs = {script: process.communicate(timeout=TIMEOUT)[0] for script, process in processes.items()}
    return [Run(script, processes[script].returncode, output) for script, output in outputs.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a PostgreSQL URL whose database name starts ogpanel_bench")
    args = parser.parse_args()
    runs = run_all(args.database_url)
    for run in runs:
        print(f"== {run.script} --quick: {'ok' if run.ok else 'FAILED'}\n{run.output}", flush=True)
    failed = [run.script for run in runs if not run.ok]
    print(
        f"benchmarks --quick: {len(runs) - len(failed)} of {len(runs)} ran"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
