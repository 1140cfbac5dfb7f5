"""The stack's processes under supervisord (PyPI ``supervisor``): one daemon per data dir.

supervisord starts each component in its own process group, restarts one that dies (with a
growing back-off while it keeps dying within ``START_SECONDS``), stops a component's whole group,
and keeps running when the terminal that started it goes away. The stack talks to it over its
XML-RPC unix socket. Each component runs through ``stack.launch`` with a launch file (argv,
environment, working directory) written at `up`; ``stack.supervision_events`` records what
happened to each component for `status`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from stack.errors import StackError
from stack.processes import LOG_TAIL_LINES, PidRecord, PidState, ProcessSupervisor

START_SECONDS = 3
"""A component that dies sooner than this after starting is restarted after a back-off that
grows by a second per attempt (1 s, 2 s, ...)."""
START_RETRIES = 60
"""Attempts before supervisord gives up on a component that keeps dying at start (~30 min)."""
DAEMON_START_TIMEOUT = 20.0
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 108 bytes on Linux
HISTORY_LISTENER = "accord-history"
ALIVE_STATES = ("STARTING", "RUNNING", "BACKOFF", "STOPPING")


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    state: str
    """supervisord's state name: STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED,
    FATAL, UNKNOWN."""
    pid: int
    exit_status: int
    description: str


@dataclass(frozen=True)
class History:
    starts: int = 0
    unexpected_exits: int = 0
    backoffs: int = 0
    last_exit_status: str | None = None
    """As supervisord logged it, e.g. ``terminated by SIGKILL`` or ``exit status 1``."""
    last_exit_at: float | None = None
    fatal: bool = False

    @property
    def restarts(self) -> int:
        """Deaths supervision answered with a restart: after running (an exit), or while
        still starting (a back-off)."""
        return self.unexpected_exits + self.backoffs

    def describe(self) -> str:
        if not self.unexpected_exits and not self.backoffs:
            return ""
        parts = [f"restarted {self.restarts}x"]
        if self.last_exit_at is not None:
            how = self.last_exit_status or "exit"
            parts.append(f"last exit {time.strftime('%H:%M:%S', time.localtime(self.last_exit_at))}"
                         f" ({how})")  # fmt: skip
        if self.fatal:
            parts.append("gave up restarting")
        return ", ".join(parts)


def _quote(text: str) -> str:
    """For supervisord's config: shell-quoted, ``%`` doubled (its interpolation marker)."""
    return shlex.quote(text).replace("%", "%%")


class Supervisord:
    """The supervisord of one data dir. Keeps ``ProcessSupervisor``'s paths for logs."""

    def __init__(self, data_dir: Path) -> None:
        self.files = ProcessSupervisor(data_dir)
        self.run_dir = self.files.run_dir
        self.log_dir = self.files.log_dir
        self.conf_file = self.run_dir / "supervisord.conf"
        self.socket = self.run_dir / "supervisord.sock"
        self.pid_file_path = self.run_dir / "supervisord.pid"
        self.launch_dir = self.run_dir / "launch"
        self.history_dir = self.run_dir / "history"

    # --- files ----------------------------------------------------------------------------

    def log_file(self, name: str) -> Path:
        return self.files.log_file(name)

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        return self.files.log_tail(name, lines)

    def launch_file(self, name: str) -> Path:
        return self.launch_dir / f"{name}.json"

    def write_launch(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None,
    ) -> None:
        self.launch_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "name": name,
            "argv": list(argv),
            "env": dict(env),
            "cwd": str(cwd) if cwd else None,
        }
        path = self.launch_file(name)
        scratch = path.with_suffix(".tmp")
        # The environment may hold secrets (tokens, keys): owner only.
        scratch.touch(mode=0o600)
        scratch.write_text(json.dumps(spec))
        scratch.replace(path)

    def history(self, name: str) -> History:
        try:
            data = json.loads((self.history_dir / f"{name}.json").read_text())
        except (OSError, ValueError):
            return History()
        return History(**{k: v for k, v in data.items() if k in History.__dataclass_fields__})

    def reset_history(self, name: str) -> None:
        (self.history_dir / f"{name}.json").unlink(missing_ok=True)

    def write_config(self, programs: Iterable[tuple[str, float]]) -> None:
        """One ``[program]`` per (name, stop timeout); none starts by itself."""
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise StackError(
                f"the data dir path is too long for supervisord's socket ({self.socket}); "
                "use a shorter ACCORD_DATA_DIR"
            )
        python = _quote(sys.executable)
        lines = [
            "; Written by `accord stack up` from settings; edits are overwritten.",
            "[unix_http_server]",
            f"file={_quote(str(self.socket))}",
            "chmod=0700",
            "[supervisord]",
            f"logfile={_quote(str(self.log_dir / 'supervisord.log'))}",
            "logfile_maxbytes=10MB",
            "logfile_backups=1",
            f"pidfile={_quote(str(self.pid_file_path))}",
            f"directory={_quote(str(self.run_dir))}",
            "nodaemon=false",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory=supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]",
            f"serverurl=unix://{_quote(str(self.socket))}",
            f"[eventlistener:{HISTORY_LISTENER}]",
            f"command={python} -m stack.supervision_events {_quote(str(self.history_dir))} "
            f"{_quote(str(self.log_dir / 'supervisord.log'))}",
            "stopwaitsecs=2",
            "events=PROCESS_STATE",
            "autostart=true",
            "autorestart=true",
            f"stderr_logfile={_quote(str(self.log_dir / 'supervisor-events.log'))}",
        ]
        for name, stop_timeout in programs:
            log = _quote(str(self.log_file(name)))
            lines += [
                f"[program:{name}]",
                f"command={python} -m stack.launch {_quote(str(self.launch_file(name)))}",
                "autostart=false",
                "autorestart=true",
                f"startsecs={START_SECONDS}",
                f"startretries={START_RETRIES}",
                "stopsignal=TERM",
                f"stopwaitsecs={int(stop_timeout)}",
                "stopasgroup=true",
                "killasgroup=true",
                "redirect_stderr=true",
                f"stdout_logfile={log}",
                "stdout_logfile_maxbytes=20MB",
                "stdout_logfile_backups=1",
            ]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        scratch = self.conf_file.with_suffix(".tmp")
        scratch.write_text("\n".join(lines) + "\n")
        scratch.replace(self.conf_file)

    # --- the daemon -----------------------------------------------------------------------

    def _rpc(self) -> Any:
        proxy = xmlrpc.client.ServerProxy(
            "http://127.0.0.1",
            transport=SupervisorTransport(None, None, f"unix://{self.socket}"),
        )
        return proxy.supervisor

    def running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return self._rpc().getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def ensure_daemon(self) -> None:
        """Start supervisord (detached) with the current config, or make the running one load
        it (new programs are added; programs that are not running pick up changes)."""
        if self.running():
            added, changed, _removed = self._rpc().reloadConfig()[0]
            for name in added:
                self._rpc().addProcessGroup(name)
            for name in changed:
                info = self.info(name)
                if info is None or info.state not in ALIVE_STATES:
                    with contextlib.suppress(xmlrpc.client.Fault):
                        self._rpc().removeProcessGroup(name)
                    self._rpc().addProcessGroup(name)
            return
        supervisord = Path(sys.executable).parent / "supervisord"
        command = [str(supervisord) if supervisord.exists() else "supervisord"]
        result = subprocess.run(
            [*command, "-c", str(self.conf_file)],
            capture_output=True,
            text=True,
            timeout=DAEMON_START_TIMEOUT,
            check=False,
        )  # daemonizes: the command returns once the daemon forked
        deadline = time.monotonic() + DAEMON_START_TIMEOUT
        while not self.running():
            if time.monotonic() > deadline:
                raise StackError(
                    f"supervisord did not start (exit {result.returncode}): "
                    f"{(result.stdout + result.stderr).strip()}\n"
                    f"--- {self.log_dir / 'supervisord.log'} ---\n"
                    f"{self.files.log_tail('supervisord')}"
                )
            time.sleep(0.1)

    def shutdown(self) -> None:
        """Stop the daemon (after its programs) and wait until it is gone."""
        pid = self._daemon_pid()
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            self._rpc().shutdown()
        deadline = time.monotonic() + DAEMON_START_TIMEOUT
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _daemon_pid(self) -> int | None:
        try:
            return int(self.pid_file_path.read_text().strip())
        except (OSError, ValueError):
            return None

    # --- programs -------------------------------------------------------------------------

    def info(self, name: str) -> ProcessInfo | None:
        if not self.running():
            return None
        try:
            raw = self._rpc().getProcessInfo(name)
        except xmlrpc.client.Fault:
            return None  # not configured (yet)
        return ProcessInfo(
            name=name,
            state=raw["statename"],
            pid=raw["pid"],
            exit_status=raw["exitstatus"],
            description=raw["description"],
        )

    def start(self, name: str) -> None:
        try:
            self._rpc().startProcess(name, False)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise StackError(
                    f"{name}: supervisord could not start it: {fault.faultString}"
                ) from None

    def stop(self, name: str, timeout: float = 20.0) -> bool:
        """Stop the component's process group (TERM, then KILL after its stop timeout).
        True if it was running."""
        info = self.info(name)
        if info is None or info.state not in ALIVE_STATES:
            return False
        try:
            self._rpc().stopProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise StackError(
                    f"{name}: supervisord could not stop it: {fault.faultString}"
                ) from None
        return True

    def any_alive(self) -> bool:
        if not self.running():
            return False
        return any(
            process["statename"] in ALIVE_STATES and process["name"] != HISTORY_LISTENER
            for process in self._rpc().getAllProcessInfo()
        )

    # --- what the rest of the stack asks --------------------------------------------------

    def state(self, name: str) -> tuple[PidState, PidRecord | None]:
        info = self.info(name)
        if info is None or info.state not in ALIVE_STATES or info.pid <= 0:
            return PidState.STOPPED, None
        return PidState.RUNNING, PidRecord(pid=info.pid, command=[])

    def read_pid(self, name: str) -> PidRecord | None:
        return self.state(name)[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
