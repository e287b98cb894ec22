"""Every benchmark still runs: each script, at its smallest size (--quick), ends with its results table.

Nothing here judges a timing; docs/performance.md has the numbers. The scripts run side by side,
each in its own process with its own simulator, database and gunicorn.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {
    "dashboard_fanout.py": "sequential / dashboard",
    "action_overhead.py": "added by the panel",
    "killswitch_ratelimit.py": "429s from the simulator",
    "load.py": "upstream 429s",
    "audit_scale.py": "CSV export",
}


def test_each_benchmark_runs_at_its_smallest_size_and_prints_its_table():
    runs = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / name), "--quick"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in SCRIPTS
    }
    outputs = {name: run.communicate(timeout=120)[0] for name, run in runs.items()}
    for name, run in runs.items():
        assert run.returncode == 0, f"{name} failed:\n{outputs[name]}"
        assert SCRIPTS[name] in outputs[name] and "\n|---" in outputs[name], outputs[name]
