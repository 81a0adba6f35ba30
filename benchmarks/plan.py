"""Time `posttrain plan` on the 8B recipe (target: under 60 s on 2 CPU cores). Prints one JSON line.

Cold, in a fresh process: imports (torch, transformers), the meta-device model for parameter counts, and the
fake-tensor traces of each micro-step (1 and 2 decoder layers each), as `posttrain plan` runs them.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "posttrain.cli", "plan", str(ROOT / "recipes" / "tulu3-8b.yaml")],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    inside = next((line.split()[1] for line in done.stdout.splitlines() if line.startswith("plan: ")), None)
    print(json.dumps({"benchmark": "plan", "recipe": "tulu3-8b", "seconds": round(seconds, 1),
                      "plan_seconds": float(inside.rstrip("s")) if inside else None, "exit": done.returncode,
                      "target_s": 60}))
