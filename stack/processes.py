"""A small process supervisor: one child per component, a log file and a pid file each.

Children run in their own session (process group) so that stopping a component also stops
anything it spawned, and so that a detached stack survives the terminal that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from stack.errors import StackError

LOG_TAIL_LINES = 30
MAX_LOG_BYTES = 20 * 1024 * 1024
# Starts the line the supervisor writes before each run of a component.
RUN_MARKER = "=== accord stack: "


class PidState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # no pid file
    STALE = "stale"  # a pid file whose process is gone or is someone else's


@dataclass(frozen=True)
class PidRecord:
    pid: int
    command: list[str]
    # Kernel start time of the process: tells our process from a later one that reuses the pid.
    start_ticks: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"pid": self.pid, "command": self.command, "start_ticks": self.start_ticks}
        )

    @classmethod
    def from_json(cls, text: str) -> PidRecord:
        data = json.loads(text)
        ticks = data.get("start_ticks")
        return cls(
            pid=int(data["pid"]),
            command=[str(part) for part in data["command"]],
            start_ticks=int(ticks) if ticks is not None else None,
        )

    def is_alive(self) -> bool:
        """The pid is alive and is still the process we started (not a recycled pid)."""
        if self.pid <= 0 or not pid_alive(self.pid):
            return False
        ticks = read_start_ticks(self.pid)
        if self.start_ticks is not None and ticks is not None:
            return ticks == self.start_ticks
        cmdline = read_cmdline(self.pid)
        return cmdline is None or not self.command or cmdline[:1] == self.command[:1]


class ProcessSupervisor:
    """Starts, inspects and stops named children; pid files in ``<data_dir>/run``, logs in
    ``<data_dir>/logs``."""

    def __init__(self, data_dir: Path) -> None:
        self.run_dir = data_dir / "run"
        self.log_dir = data_dir / "logs"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # --- inspection -------------------------------------------------------------------------

    def read_pid(self, name: str) -> PidRecord | None:
        try:
            return PidRecord.from_json(self.pid_file(name).read_text())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return PidRecord(pid=-1, command=[])  # unreadable: treated as stale

    def state(self, name: str) -> tuple[PidState, PidRecord | None]:
        record = self.read_pid(name)
        if record is None:
            return PidState.STOPPED, None
        if record.is_alive():
            return PidState.RUNNING, record
        return PidState.STALE, record

    def clean_stale(self, name: str) -> bool:
        """Remove the pid file if its process is gone or the pid now belongs to another program."""
        state, _ = self.state(name)
        if state is PidState.STALE:
            self.pid_file(name).unlink(missing_ok=True)
            return True
        return False

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the latest run wrote (earlier runs share the file)."""
        try:
            with self.log_file(name).open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        text = text.rpartition(RUN_MARKER)[2].partition("\n")[2] if RUN_MARKER in text else text
        return "\n".join(text.splitlines()[-lines:]) or "(the process wrote nothing)"

    # --- lifecycle --------------------------------------------------------------------------

    def start(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` as ``name``; its stdout and stderr go to ``logs/<name>.log``."""
        self.clean_stale(name)
        state, record = self.state(name)
        if state is PidState.RUNNING and record is not None:
            raise StackError(f"{name} is already running (pid {record.pid})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_file(name)
        if log_file.exists() and log_file.stat().st_size > MAX_LOG_BYTES:
            log_file.replace(log_file.with_suffix(".log.1"))  # keep one previous generation
        with log_file.open("ab") as log:
            started = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n{RUN_MARKER}{started} starting {name}\n".encode())
            log.flush()
            child = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        record = PidRecord(
            pid=child.pid,
            command=read_cmdline(child.pid) or list(command),
            start_ticks=read_start_ticks(child.pid),
        )
        write_atomically(self.pid_file(name), record.to_json())
        return child

    def stop(self, name: str, timeout: float = 20.0) -> bool:
        """SIGTERM the component's process group, SIGKILL it after ``timeout``. True if it ran."""
        state, record = self.state(name)
        if state is not PidState.RUNNING or record is None:
            self.pid_file(name).unlink(missing_ok=True)
            return False
        terminate_group(record.pid, timeout)
        self.pid_file(name).unlink(missing_ok=True)
        return True


# --- process helpers (Linux /proc; the stack is a development tool for Linux and macOS) -------


def read_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as dead."""
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it is our own child, so it does not linger as a zombie.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all we have
    return stat.rpartition(")")[2].split()[0] != "Z"


def read_start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; starttime is field 22 of the whole line.
    return int(stat.rpartition(")")[2].split()[19])


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for a group that only holds zombies; check the leader properly.
    return pid_alive(pgid) or _group_has_live_member(pgid)


def _group_has_live_member(pgid: int) -> bool:
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def terminate_group(pgid: int, timeout: float) -> None:
    """Stop a process group politely, then forcibly; return once nothing in it is alive."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.05)
    if group_alive(pgid):
        raise StackError(f"process group {pgid} survived SIGKILL")


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
