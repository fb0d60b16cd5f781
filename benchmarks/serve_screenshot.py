"""The README's screenshot of ``bartsmiles serve``: a real server, a real (headless) Chromium.

    OMP_NUM_THREADS=1 python benchmarks/serve_screenshot.py                      # the main job's BBBP model
    python benchmarks/serve_screenshot.py --model runs/esol_1ep --smiles CCO --task 0

1. ``bartsmiles serve MODEL --port P`` in a subprocess (127.0.0.1), waited for until ``/info`` answers;
2. ``chromium --headless --screenshot`` of ``/?smiles=...&task=...``: the page fills the form,
   predicts every SMILES, and draws the first valid one's atom attributions and substructure table;
3. the server is stopped.

Output: ``benchmarks/results/serve_screenshot.png`` and ``serve_screenshot.json`` (the command,
machine, date, model, the SMILES shown, and what ``/predict`` answered for them, so the picture can
be checked against the API).  Nothing is random: no seed is involved.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bartsmiles.evaluation.machine import machine_info

REPO = Path(__file__).resolve().parents[1]
#: BBBP-like molecules: caffeine, diazepam, a sugar (unlikely to cross), and an invalid one (reported)
DEFAULT_SMILES = ("CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21", "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
                  "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O", "C1CC(")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, server: subprocess.Popen, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=5) as r:
                return json.load(r)
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the server stopped (exit status {server.returncode})")
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not answer within {timeout:.0f} s")
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/bbbp_scaffold/finetune/checkpoint_best.pt",
                        help="fine-tuned model (default: the main job's BBBP model)")
    parser.add_argument("--smiles", nargs="+", default=list(DEFAULT_SMILES), help="SMILES put in the page")
    parser.add_argument("--task", default="0", help="task shown (index or name)")
    parser.add_argument("--size", default="1280,1150", help="window size W,H of the screenshot")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve_screenshot"),
                        help="output stem: STEM.png and STEM.json")
    args = parser.parse_args()
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if browser is None:
        raise SystemExit("Chromium is not installed (Debian: apt-get install chromium)")
    port = _free_port()
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "bartsmiles.cli", "serve", args.model, "--port", str(port)])
    try:
        info = _wait(port, server)
        load_s = time.perf_counter() - started
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", method="POST",
                                         data=json.dumps({"smiles": args.smiles, "errors": "report"}).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as r:
            predicted = json.load(r)
        query = urllib.parse.urlencode([("smiles", s) for s in args.smiles] + [("task", args.task)])
        url = f"http://127.0.0.1:{port}/?{query}"
        png = Path(args.out + ".png")
        with tempfile.TemporaryDirectory() as profile:
            shot = time.perf_counter()
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={args.size}",
                            "--virtual-time-budget=60000", f"--screenshot={png}", url],
                           check=True, capture_output=True, timeout=300)
            shot_s = time.perf_counter() - shot
    finally:
        server.terminate()
        server.wait(timeout=60)
    record = {"command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
              "seeds": None, "model": info["model"], "url_path": url.split(str(port), 1)[1], "browser": browser,
              "server_start_to_ready_s": round(load_s, 1), "page_screenshot_s": round(shot_s, 1),
              "info": info, "predict": predicted, "screenshot": str(png.relative_to(REPO)) if png.is_relative_to(REPO)
              else str(png)}
    Path(args.out + ".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("screenshot", "server_start_to_ready_s", "page_screenshot_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
