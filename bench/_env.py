"""Shared bits for the bench scripts: where we run, and how results are saved."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from the repo root
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device) -> dict:
    import torch

    d = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
         "device": str(device), "torch_threads_default": torch.get_num_threads(), "loadavg_start": os.getloadavg()}
    if getattr(device, "type", str(device)).startswith("cuda"):
        d["gpu"] = torch.cuda.get_device_name(device)
    return d


def describe(xs: list[float]) -> dict:
    xs = [x for x in xs if x == x]
    if not xs:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def save(name: str, payload: dict, markdown: str) -> Path:
    """Write ``bench/results/<name>.json`` and ``.md``; the markdown is also what was printed."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg_end": os.getloadavg()}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str))
    (RESULTS / f"{name}.md").write_text(markdown)
    return RESULTS / f"{name}.json"
