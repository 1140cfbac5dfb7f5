"""What every benchmark shares: an isolated embedded stack (own data dir, free ports — the
approach of tests/integration/conftest.py), process CPU/RSS from /proc, percentiles, results."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from settings import Settings
from simulate.timescale import CompressedPolicy, write_compressed_policy
from stack.isolated import isolated_settings
from stack.orchestrator import Stack
from stack.ports import pick_free_ports, split_host_port

RESULTS_DIR = Path(__file__).parent / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@contextlib.asynccontextmanager
async def bench_stack(
    name: str,
    keep: bool = False,
    components: Sequence[str] = ("kafka", "temporal"),
    **overrides: Any,
) -> AsyncIterator[Settings]:
    """Kafka (unless ``components`` leaves it out) + Temporal dev server in a fresh data dir;
    always stopped on exit."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"accord-bench-{name}-"))
    settings = isolated_settings(data_dir, **{"log_level": "WARNING", **overrides})
    stack = Stack(settings, only=list(components), report=lambda m: print(f"  stack: {m}"))
    try:
        await stack.up()
        yield settings
    finally:
        await stack.down()
        if not keep:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)


@dataclass(frozen=True)
class ProcessSample:
    cpu_seconds: float
    rss_bytes: int
    at: float


def sample_process(pid: int) -> ProcessSample:
    """User+system CPU seconds and resident set size of one process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return ProcessSample(cpu, rss_pages * PAGE_SIZE, time.monotonic())


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[index]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {
        "benchmark": name,
        "at": stamp,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        **data,
    }
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def print_table(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    width = max(len(label) for label, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 30))
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


@dataclass(frozen=True)
class SimulationStack:
    settings: Settings
    bank_pid: int
    metrics_address: str
    policy: CompressedPolicy


BYTECODE_PACKAGES = ("schemas", "decisions", "workflows", "activities")


def compile_bytecode() -> None:
    """What ``make bytecode`` and the image build do: the workflow sandbox re-imports the workflow
    modules for every new case (and every cache miss), and without an up-to-date ``.pyc`` (the
    source changed since ``make install``; nothing writes one under PYTHONDONTWRITEBYTECODE=1)
    each import compiles ``workflows/case.py`` from source: measure the worker as it ships."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in BYTECODE_PACKAGES:
        compileall.compile_dir(root / package, quiet=1)


@contextlib.asynccontextmanager
async def simulation_stack(
    name: str,
    keep: bool = False,
    *,
    seconds_per_policy_day: Decimal = Decimal(1),
    durations: dict[str, int] | None = None,
    policy_tag: str | None = None,
    **overrides: Any,
) -> AsyncIterator[SimulationStack]:
    """Kafka, Temporal, the real stream processor and the simulated bank's worker (with SDK
    metrics on a free port), on the compressed policy (``seconds_per_policy_day``; optional
    ``durations`` overrides); all stopped on exit."""
    from simulate.bank_process import start_bank, stop_bank

    compile_bytecode()
    async with bench_stack(name, keep=keep, **overrides) as base:
        policy = write_compressed_policy(
            base.policy_file,
            base.data_dir / "policy.toml",
            seconds_per_policy_day,
            durations=durations,
            tag=policy_tag,
        )
        settings = base.model_copy(update={"policy_file": policy.path.resolve()})
        host = split_host_port(settings.temporal.address)[0]
        metrics_address = f"{host}:{pick_free_ports(1, host)[0]}"
        stream = Stack(settings, only=["stream"], report=lambda m: print(f"  stack: {m}"))
        await stream.up()
        try:
            bank = await start_bank(settings, lambda m: print(f"  {m}"), metrics_address)
            try:
                yield SimulationStack(settings, bank.pid, metrics_address, policy)
            finally:
                await stop_bank(bank, settings, lambda m: print(f"  {m}"))
        finally:
            await stream.down()


def task_timeouts(log: Path) -> int:
    """Workflow tasks the worker did not finish within the task timeout (its own warnings)."""
    if not log.exists():
        return 0
    with log.open(errors="replace") as lines:
        return sum(1 for line in lines if "Task not found when completing" in line)


async def scrape(address: str, path: str = "/metrics") -> str:
    """GET a Prometheus page (plain HTTP/1.0: no client library for one request)."""
    import asyncio

    host, port = split_host_port(address)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    return raw.decode(errors="replace").split("\r\n\r\n", 1)[-1]


def histogram_quantiles(
    metrics_text: str, metric: str, quantiles: Sequence[float]
) -> dict[str, float | None]:
    """Quantiles of a Prometheus histogram (all label sets summed), as the upper bound of the
    bucket the quantile falls in: resolution is the SDK's bucket layout."""
    buckets: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith(f"{metric}_bucket"):
            continue
        labels, value = line.rsplit(" ", 1)
        bound = labels.split('le="', 1)[1].split('"', 1)[0]
        upper = float("inf") if bound == "+Inf" else float(bound)
        buckets[upper] = buckets.get(upper, 0.0) + float(value)
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    result: dict[str, float | None] = {"count": total}
    for quantile in quantiles:
        result[f"p{round(quantile * 100)}"] = next(
            (upper for upper, cumulative in ordered if total and cumulative >= quantile * total),
            None,
        )
    return result


class ProcessWatch:
    """Samples a process's CPU and RSS once a second in the background."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[ProcessSample] = []
        self._task: Any = None

    async def __aenter__(self) -> ProcessWatch:
        import asyncio

        async def sample_forever() -> None:
            while True:
                try:
                    self.samples.append(sample_process(self.pid))
                except OSError:
                    return
                await asyncio.sleep(1.0)

        self._task = asyncio.create_task(sample_forever())
        return self

    async def __aexit__(self, *_: object) -> None:
        import asyncio

        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(OSError):
            self.samples.append(sample_process(self.pid))

    def summary(self) -> dict[str, float]:
        if len(self.samples) < 2:
            return {}
        first, last = self.samples[0], self.samples[-1]
        elapsed = last.at - first.at
        return {
            "cpu_seconds": round(last.cpu_seconds - first.cpu_seconds, 2),
            "cpu_percent_avg": round(100 * (last.cpu_seconds - first.cpu_seconds) / elapsed, 1),
            "rss_max_mib": round(max(s.rss_bytes for s in self.samples) / 2**20, 1),
            "rss_last_mib": round(last.rss_bytes / 2**20, 1),
            "seconds": round(elapsed, 1),
        }


class PySpy:
    """``py-spy record`` of one process while a block runs (if py-spy is installed), summarised
    as the functions with the most samples (self and inclusive). Needs ptrace rights (root or
    ``kernel.yama.ptrace_scope=0``)."""

    def __init__(self, pid: int, name: str, enabled: bool = True) -> None:
        import shutil
        import sys

        self.pid = pid
        self.executable = shutil.which("py-spy", path=str(Path(sys.executable).parent))
        self.enabled = enabled and self.executable is not None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.raw = RESULTS_DIR / f"profile-{name}-{stamp}.txt"
        self._child: Any = None

    def __enter__(self) -> PySpy:
        import subprocess

        if self.enabled:
            assert self.executable is not None
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            self._child = subprocess.Popen(
                [self.executable, "record", "-p", str(self.pid), "-r", "50", "-f", "raw",
                 "-o", str(self.raw), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        return self

    def __exit__(self, *_: object) -> None:
        import signal

        if self._child is not None:
            self._child.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            self._child.wait(timeout=60)

    def summary(self, top: int = 12) -> dict[str, Any]:
        if not self.enabled or not self.raw.exists():
            return {}
        from collections import Counter

        total, own, inclusive = 0, Counter[str](), Counter[str]()
        idle = ("select (selectors.py", "_worker (concurrent/futures/thread.py", "wait (threading")
        for line in self.raw.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            frames = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in stack.split(";")]
            if not frames or any(i in frames[-1] for i in idle):
                continue  # a thread waiting for work, not working
            count = int(samples)
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count

        def share(counter: Counter[str]) -> list[str]:
            return [f"{100 * n / total:5.1f}% {f}" for f, n in counter.most_common(top)]

        return {"busy_samples": total, "raw": str(self.raw), "self": share(own),
                "inclusive": share(inclusive)}  # fmt: skip


def progress_printer(*, total: int, every_seconds: float) -> Callable[[str, int], None]:
    """A simulation progress callback: prints the latest counts, with the load, at most every
    ``every_seconds``."""
    last_printed = 0.0
    counts: dict[str, int] = {}

    def report(name: str, value: int) -> None:
        nonlocal last_printed
        counts[name] = value
        now = time.monotonic()
        if now - last_printed >= every_seconds:
            last_printed = now
            print(f"  {counts} of {total} ({load_average()})", flush=True)

    return report
