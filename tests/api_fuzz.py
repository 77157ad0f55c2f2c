"""`python -m tests.api_fuzz [ST_RUN_OPTIONS...]`: schemathesis against the real server.

Starts the fake GitHub and `python -m gistscan serve` (each its own process, on loopback),
then runs `st run` against the server's /openapi.json with every check schemathesis has:
no 5xx, and no disagreement between the document and what the server does (statuses,
content types, headers, bodies, schema-valid input accepted, invalid input refused). Its
exit status is schemathesis's. `tox -e api` runs it; extra arguments go to `st run`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GISTSCAN_", "GITHUB_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str]) -> int:
    st = shutil.which("st") or shutil.which("schemathesis")
    if st is None:
        print("api_fuzz: needs schemathesis (pip install schemathesis)", file=sys.stderr)
        return 2
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_github", "--port", "0", "--users", "alice:3x2,bob:2x1",
         "--rate-limit", "1000000000"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    server: subprocess.Popen[bytes] | None = None
    try:
        assert fake.stdout is not None
        api = fake.stdout.readline().decode().strip()
        if not api.startswith("http://"):
            print("api_fuzz: the fake GitHub did not start", file=sys.stderr)
            return 2
        # Every request comes from 127.0.0.1: lift the per-client limit, keep searches short.
        server = subprocess.Popen(
            [sys.executable, "-m", "gistscan", "serve", "--port", "0"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_env(
                GISTSCAN_API_URL=api,
                GISTSCAN_MAX_CONCURRENT_SEARCHES="64",
                GISTSCAN_MAX_SEARCHES_PER_CLIENT="64",
                GISTSCAN_SEARCH_DEADLINE="10",
                GISTSCAN_SHUTDOWN_TIMEOUT="5",
            ),
        )
        assert server.stderr is not None
        url = ""
        deadline = time.monotonic() + START_TIMEOUT
        while not url and time.monotonic() < deadline:
            line = server.stderr.readline()
            if not line:
                break
            record = json.loads(line)
            url = record.get("url", "") if record.get("message") == "listening" else ""
        if not url:
            print("api_fuzz: the gistscan server did not start", file=sys.stderr)
            return 2
        # The server's log is not needed: let it drain to nowhere so it never blocks.
        subprocess.Popen(["cat"], stdin=server.stderr, stdout=subprocess.DEVNULL)
        command = [
            st, "run", f"{url}/openapi.json",
            "--checks", "all",
            "--max-examples", "25",
            "--phases", "examples,coverage,fuzzing",
            "--generation-database", "none",
            "--workers", "1",  # 2 threads trip a CPython 3.11 ast bug in hypothesis
            "--max-time", "90",  # fuzzing repeats until this is spent
            *argv,
        ]  # fmt: skip
        print("api_fuzz:", " ".join(command), file=sys.stderr, flush=True)
        hooks = _env(SCHEMATHESIS_HOOKS="tests.st_hooks")  # the `glob` format
        return subprocess.run(command, cwd=REPO, env=hooks, check=False).returncode
    finally:
        if server is not None:
            _stop(server)
        _stop(fake)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
