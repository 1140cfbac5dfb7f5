"""supervisord event listener: what happened to each component (starts, unexpected exits and
their status, back-offs, giving up), one JSON file per component, for `accord stack status`."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from supervisor import childutils


def _last_exit(supervisord_log: Path, name: str) -> str | None:
    """How the component last exited, as supervisord logged it ("terminated by SIGKILL")."""
    marker = f"exited: {name} ("
    try:
        with supervisord_log.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 16_384))
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if marker in line:
            return line.split(marker, 1)[1].rsplit(")", 1)[0].removesuffix("; not expected")
    return None


def _record(history_dir: Path, name: str, event: str, exit_status: Any) -> None:
    path = history_dir / f"{name}.json"
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {}
    now = time.time()
    if event == "PROCESS_STATE_RUNNING":
        record["starts"] = record.get("starts", 0) + 1
        record["last_started_at"] = now
        record.pop("fatal", None)
    elif event == "PROCESS_STATE_EXITED":
        record["unexpected_exits"] = record.get("unexpected_exits", 0) + 1
        record["last_exit_at"] = now
        record["last_exit_status"] = exit_status
    elif event == "PROCESS_STATE_BACKOFF":
        record["backoffs"] = record.get("backoffs", 0) + 1
        record["last_exit_at"] = now
        record["last_exit_status"] = exit_status
    elif event == "PROCESS_STATE_FATAL":
        record["fatal"] = True
    else:
        return
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(record))
    scratch.replace(path)


def main() -> None:
    history_dir, supervisord_log = Path(sys.argv[1]), Path(sys.argv[2])
    history_dir.mkdir(parents=True, exist_ok=True)
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event = headers["eventname"]
        process_headers, _ = childutils.eventdata(payload + "\n")
        name = process_headers.get("processname", "")
        exit_status = None
        if event in ("PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF"):
            exit_status = _last_exit(supervisord_log, name)
        with contextlib.suppress(OSError):
            _record(history_dir, name, event, exit_status)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
