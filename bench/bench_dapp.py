"""dApp benchmark: the bundle's size, and how long the page takes from loading to connected.

    .venv/bin/python bench/bench_dapp.py [--loads 9] [--network net.json]

Size: dapp/dist/size.json, as `make dapp` (dapp/build.mjs) writes it: the bundle's bytes and
gzipped bytes.

Time to connected, over the demo's network (`python -m demo --serve`, or one already running
with --network FILE): each load opens the page in a fresh browser context (nothing cached) in
Debian's chromium with the test wallet (tests/dapp/wallet.js) injected, clicks connect as soon
as the page is ready, and ends when the status line says "connected". The page itself records
the moments (performance.now(), from the navigation's start): ready (config fetched, page
wired), the click, connected (accounts, the chain id and the account shown). The floor, in
the same browser and loads: what any wallet-connected page of this server must do, with no
app: a plain file of the same origin opened in a fresh context, the page's config fetched and
the same wallet asked for its accounts and chain id. Figures go to bench/results/dapp.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "dapp"))  # the test wallet's configuration

from dapp_steps import wallet_script  # noqa: E402
from figures import percentile  # noqa: E402  (bench/ is the script's folder)

CHROMIUM = "/usr/bin/chromium"
SIZE = ROOT / "dapp" / "dist" / "size.json"
OUT = ROOT / "bench" / "results" / "dapp.json"

# Marks the page's own moments, from the start of the navigation, by watching its status line.
MARKS = """
window.__marks = {};
const mark = (name) => { if (!(name in window.__marks)) window.__marks[name] = performance.now(); };
document.addEventListener("click", (e) => { if (e.target.closest('[data-testid="connect"]')) mark("click"); }, true);
document.addEventListener("DOMContentLoaded", () => {
  mark("dom");
  const status = document.querySelector('[data-testid="status"]');
  const look = () => {
    const text = status.textContent;
    if (text.startsWith("ready")) mark("ready");
    if (text.startsWith("connected")) mark("connected");
  };
  new MutationObserver(look).observe(status, { childList: true, characterData: true, subtree: true });
  look();
});
"""


# The floor: a page of the same origin with no app on it fetches the config and connects the wallet.
FLOOR_URL = "style.css"
FLOOR = """async () => {
  const config = await (await fetch("config.json", { cache: "no-store" })).json();
  const accounts = await window.__wallet.provider.request({ method: "eth_requestAccounts" });
  const chainId = Number(await window.__wallet.provider.request({ method: "eth_chainId" }));
  if (!accounts.length || chainId !== config.chainId) throw new Error("the floor's wallet did not connect");
  return performance.now();
}"""


def bundle_size() -> dict:
    if not SIZE.exists():
        raise SystemExit(f"{SIZE.relative_to(ROOT)} not found: run `make dapp` first")
    return json.loads(SIZE.read_text())


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 1),
        "p95": round(percentile(values, 95), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def measure(info: dict, loads: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    account = info["accounts"]["owner"]["address"]
    script = wallet_script(info["rpc_url"], account, int(info["chain_id"])) + MARKS
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    runs = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            for _ in range(loads + 1):  # the first load warms the servers' caches and is not counted
                context = browser.new_context()
                try:
                    page = context.new_page()
                    page.add_init_script(script=script)
                    page.goto(info["dapp_url"])
                    page.locator('body[data-ready="true"]').wait_for(timeout=30_000)
                    page.get_by_test_id("connect").click()
                    page.wait_for_function("() => window.__marks.connected !== undefined", timeout=30_000)
                    marks = page.evaluate("() => window.__marks")
                    if account.lower() not in page.get_by_test_id("account").inner_text().lower():
                        raise SystemExit("the page says connected but shows another account")
                finally:
                    context.close()
                context = browser.new_context()
                try:
                    page = context.new_page()
                    page.add_init_script(script=script)
                    page.goto(info["dapp_url"] + FLOOR_URL)
                    marks["floor"] = page.evaluate(FLOOR)
                finally:
                    context.close()
                runs.append(marks)
        finally:
            browser.close()
    return runs[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=9, help="page loads measured (median and p95 over them)")
    parser.add_argument(
        "--network", type=Path, help="the file of a network already started with python -m demo --serve"
    )
    args = parser.parse_args()

    size = bundle_size()
    print(f"bundle: {size['bytes'] / 1024:.1f} KiB, {size['gzip_bytes'] / 1024:.1f} KiB gzipped", flush=True)

    from demo import serve

    with tempfile.TemporaryDirectory(prefix="bench-dapp-") as tmp:
        process = None
        if args.network:
            info = json.loads(args.network.read_text())
        else:
            print("starting the demo network (python -m demo --serve)...", flush=True)
            work = Path(tmp)
            process = serve.launch(work / "net.json", work / "logs", work / "demo.log")
            info = serve.wait_served(process, work / "net.json", work / "demo.log", 240)
        try:
            runs = measure(info, args.loads)
        finally:
            if process is not None:
                serve.stop_served(process)

    ready = [r["ready"] for r in runs]
    to_connected = [r["connected"] for r in runs]
    connect = [r["connected"] - r["click"] for r in runs]
    floor = [r["floor"] for r in runs]
    ratios = [r["connected"] / r["floor"] for r in runs]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "chromium": CHROMIUM},
        "bundle": size,
        "load_to_ready_ms": summary(ready),
        "load_to_connected_ms": summary(to_connected),
        "click_to_connected_ms": summary(connect),
        "floor_ms": summary(floor),
        "connected_over_floor": {
            "p50": round(statistics.median(to_connected) / statistics.median(floor), 2),
            "min": round(min(ratios), 2),
            "max": round(max(ratios), 2),
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print("| measure | p50 | p95 | min | max |")
    print("|---|---|---|---|---|")
    for key in ("load_to_ready_ms", "click_to_connected_ms", "load_to_connected_ms", "floor_ms"):
        s = report[key]
        print(f"| {key} | {s['p50']} | {s['p95']} | {s['min']} | {s['max']} |")
    r = report["connected_over_floor"]
    print(f"\nconnected / floor: {r['p50']} ({r['min']}–{r['max']})")
    print(f"{len(runs)} loads; written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
