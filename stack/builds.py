"""Binaries the cluster topology builds from Go modules: the Temporal server, its SQL schema
tool and the Temporal UI server, each at the version in settings.

Built once with the local Go toolchain from the Go module proxy (``go install module/cmd@v``),
niced, into ``<user cache>/accord/go-builds/<module>-<version>/``; a finished build carries a
marker file, so a warm cache never rebuilds and an interrupted one is redone. Nothing is
downloaded prebuilt and nothing is committed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from settings import ClusterSettings
from stack.errors import StackError, ToolMissingError

COMPLETE_MARKER = ".complete"
# Static binaries (the server's SQLite driver is pure Go), no paths of this machine inside.
BUILD_ENV = {"CGO_ENABLED": "0", "GOFLAGS": "-trimpath"}
LINKER_FLAGS = "-s -w"


@dataclass(frozen=True)
class GoProgram:
    """One ``main`` package of a Go module, installed under ``binary``."""

    package: str  # import path of the main package, relative to the module
    binary: str


@dataclass(frozen=True)
class GoBuild:
    """Programs of one module at one version, built together into one cache folder."""

    name: str
    module: str
    version: str
    programs: tuple[GoProgram, ...]

    @property
    def folder(self) -> Path:
        return go_builds_dir() / f"{self.name}-{self.version}"

    def binary(self, name: str) -> Path:
        return self.folder / name

    def present(self) -> bool:
        return (self.folder / COMPLETE_MARKER).exists()


def go_builds_dir() -> Path:
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "accord" / "go-builds"


def temporal_server_build(cluster: ClusterSettings) -> GoBuild:
    return GoBuild(
        name="temporal-server",
        module="go.temporal.io/server",
        version=cluster.temporal_version,
        programs=(
            GoProgram("cmd/server", "temporal-server"),
            GoProgram("cmd/tools/sql", "temporal-sql-tool"),
        ),
    )


def temporal_ui_build(cluster: ClusterSettings) -> GoBuild:
    return GoBuild(
        name="temporal-ui-server",
        module="github.com/temporalio/ui-server/v2",
        version=cluster.temporal_ui_version,
        programs=(GoProgram("cmd/server", "temporal-ui-server"),),
    )


def cluster_builds(cluster: ClusterSettings) -> list[GoBuild]:
    return [temporal_server_build(cluster), temporal_ui_build(cluster)]


def find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise ToolMissingError(
            "Go not found: the cluster topology builds the Temporal server and UI from their Go "
            "modules on first use. Install Go (https://go.dev/doc/install; Debian's golang-go if "
            "it is new enough for the module's `go` line) and run "
            "`accord stack fetch --topology cluster`."
        )
    return go


def ensure_built(build: GoBuild) -> Path:
    """Build ``build`` into the cache unless a finished build is there; return its folder.

    Each program is ``go install``-ed on its own (``cmd/server`` of two modules would otherwise
    share a name) into a temporary folder that replaces the cache folder only when complete.
    """
    if build.present():
        return build.folder
    build.folder.parent.mkdir(parents=True, exist_ok=True)
    # A lock, so a CLI `stack fetch` and a test session building at once do not collide.
    with (build.folder.parent / f".{build.name}-{build.version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if build.present():
            return build.folder
        go = find_go()
        with tempfile.TemporaryDirectory(dir=build.folder.parent, prefix=f".{build.name}-") as work:
            out = Path(work) / "out"
            out.mkdir()
            for program in build.programs:
                _go_install(go, build, program, out)
            (out / COMPLETE_MARKER).write_text(build.version)
            if build.folder.exists():
                shutil.rmtree(build.folder)  # an interrupted earlier attempt, without the marker
            out.rename(build.folder)
    return build.folder


def _go_install(go: str, build: GoBuild, program: GoProgram, out: Path) -> None:
    with tempfile.TemporaryDirectory(dir=out.parent) as gobin:
        target = f"{build.module}/{program.package}@v{build.version}"
        env = {**os.environ, **BUILD_ENV, "GOBIN": gobin}
        # Never fetch another toolchain: the module's `go` line must suit the installed Go.
        env.setdefault("GOTOOLCHAIN", "local")
        result = subprocess.run(
            ["nice", "-n", "10", go, "install", "-ldflags", LINKER_FLAGS, target],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        built = list(Path(gobin).iterdir())
        if result.returncode != 0 or len(built) != 1:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise StackError(
                f"`go install {target}` failed (exit {result.returncode}). It needs the Go "
                f"module proxy and a Go toolchain at least as new as the module's `go` line "
                f"(settings.stack.cluster pins the version).\n{tail}"
            )
        built[0].rename(out / program.binary)


def build_all(cluster: ClusterSettings) -> dict[str, float]:
    """Every cluster build, sequentially; seconds each one took (0 when cached)."""
    took: dict[str, float] = {}
    for build in cluster_builds(cluster):
        started = time.monotonic()
        ensure_built(build)
        took[build.name] = round(time.monotonic() - started, 1)
    return took
