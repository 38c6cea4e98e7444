"""Take docs/preview.png: the ``--preview`` page of two looping copies of the test video, shot by
headless Chromium (run by hand, not in CI; needs ``chromium`` on PATH).

Usage:
    .venv/bin/python tools/preview_screenshot.py [--out docs/preview.png] [--port 8099]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "data" / "video" / "mmaction2__demo_skeleton.mp4"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "preview.png")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--size", default="1200,440", help="browser window W,H (default 1200,440)")
    p.add_argument("--warmup", type=float, default=6.0, help="seconds the run goes before the shot")
    args = p.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        print("error: no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    run = subprocess.Popen([sys.executable, "-m", "edgepose", "run", str(VIDEO), str(VIDEO), "--loop", "--realtime",
                            "--preview", str(args.port), "--no-progress"], cwd=ROOT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{args.port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "stats.json", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or run.poll() is not None:
                    print("error: the preview did not come up", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        time.sleep(args.warmup)  # frames, fps and latency settle
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={args.size}", "--virtual-time-budget=3000",
                        f"--screenshot={args.out.resolve()}", url], check=True, timeout=60)  # fmt: skip
    finally:
        run.terminate()
        run.wait(30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
