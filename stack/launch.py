"""``python -m stack.launch FILE``: exec a component as its launch file says (argv, environment,
working directory). supervisord runs every component through this, so a component's
environment travels as JSON rather than through supervisord's config syntax."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from stack.processes import RUN_MARKER


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    # The marker lets `log_tail` show only the latest run of the component.
    print(f"\n{RUN_MARKER}{started} starting {spec['name']}", flush=True)
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
    argv = [str(part) for part in spec["argv"]]
    os.execvpe(argv[0], argv, spec["env"])  # noqa: S606 - the component's own argv


if __name__ == "__main__":
    main()
