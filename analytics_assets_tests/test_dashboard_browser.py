"""The dashboard in a real browser: the API under uvicorn over a seeded store, Debian's
Chromium driven by playwright-core (scripts/browser/dashboard_check.js). The page loads
offline, every chart draws marks, and each filter change changes the numbers to what the
seeded conversations say. `make test` installs the browser (scripts/browser/install.sh);
without it this test fails, it is never skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import uvicorn
from pymongo import MongoClient

from analytics_assets.api import keys
from analytics_assets.api.app import create_app
from analytics_assets_tests import dashboard_seed
from analytics_assets_tests.dashboard_seed import DAYS
from analytics_assets_tests.nocodb_server import free_port

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "browser" / "dashboard_check.js"
CHROMIUM = Path("/usr/bin/chromium")
# Where scripts/browser/install.sh puts playwright-core.
PLAYWRIGHT_HOME = Path(
    os.environ.get("BROWSER_TEST_HOME", Path.home() / ".cache/analytics-assets/browser-test")
)
INSTALL_HINT = "run `bash scripts/browser/install.sh` (`make test` runs it first)"
CHARTS = ["chart-volumes", "chart-topics", "chart-intents", "chart-sentiments",
          "chart-languages", "chart-quality", "chart-satisfaction"]  # fmt: skip


def _require_the_browser() -> None:
    missing = [
        what
        for what, present in (
            ("Debian's Chromium (/usr/bin/chromium)", CHROMIUM.exists()),
            ("playwright-core", (PLAYWRIGHT_HOME / "node_modules/playwright-core").is_dir()),
            ("node", shutil.which("node") is not None),
        )
        if not present
    ]
    if missing:
        pytest.fail(f"the dashboard's browser test needs {', '.join(missing)}: {INSTALL_HINT}")


@pytest.fixture(scope="module")
def served(mongo_server):
    db = MongoClient(mongo_server)["dashboard_browser_test"]
    documents = dashboard_seed.seed(db)
    key = keys.create_key(db, ["analytics:read"])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(lambda: db), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield {"url": f"http://127.0.0.1:{port}", "key": key, "documents": documents}
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_dashboard_draws_every_chart_and_follows_its_filters(served):
    _require_the_browser()
    documents, key = served["documents"], served["key"]
    model, to_day = "gpt-4o", DAYS[2].isoformat()
    run = subprocess.run(
        ["node", str(CHECK)],
        env={
            **os.environ,
            "NODE_PATH": str(PLAYWRIGHT_HOME / "node_modules"),
            "DASHBOARD_URL": served["url"],
            "API_KEY": key,
            "MODEL": model,
            "TO_DAY": to_day,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert "error" not in seen, seen["error"]

    # Loaded: every chart drew data marks, the totals are the seeded store's.
    assert seen["first"]["state"] == "ready", seen["first"]["status"]
    assert seen["marks"].keys() == set(CHARTS)
    assert all(count > 0 for count in seen["marks"].values()), seen["marks"]
    assert seen["first"]["totals"] == {
        "conversations": len(documents),
        "messages": sum(d["message_count"] for d in documents),
    }
    # A model chosen: fewer conversations, exactly that model's, and still drawn.
    of_model = [d for d in documents if d["model"] == model]
    assert seen["model"]["totals"]["conversations"] == len(of_model) < len(documents)
    assert all(count > 0 for count in seen["marksWithModel"].values()), seen["marksWithModel"]
    # The range shortened too: both filters apply.
    shorter = [d for d in of_model if d["day"] <= to_day]
    assert seen["shorter"]["totals"]["conversations"] == len(shorter) < len(of_model)
    assert (seen["filters"]["filter-model"], seen["filters"]["filter-to"]) == (model, to_day)

    # Offline and clean: every request to this server, the key in none of their URLs (it is
    # kept in sessionStorage only), nothing refused by the page's policy, no script error.
    assert {urlparse(url).netloc for url in seen["requests"]} == {urlparse(served["url"]).netloc}
    assert not [url for url in seen["requests"] if key in url or key.split("_")[1] in url]
    assert key not in seen["pageUrl"]
    assert seen["storage"] == {"session": ["analytics-assets.api-key"], "local": []}
    assert seen["cspViolations"] == []
    assert seen["consoleErrors"] == []
