"""docs/cost.md's generated tables are exactly what scripts/cost/estimate.py prints from
docs/cost_prices.json, and every price there names its page and the date the page states."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "cost" / "estimate.py"
DOC = ROOT / "docs" / "cost.md"
INPUTS = ROOT / "docs" / "cost_prices.json"
BLOCK = re.compile(r"<!-- estimate:(\w+) -->\n(.*?)\n?<!-- /estimate:\1 -->", re.DOTALL)


def blocks(text: str) -> dict[str, str]:
    return {match.group(1): match.group(2) for match in BLOCK.finditer(text)}


def run_estimate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


def test_the_docs_tables_are_the_scripts_output():
    printed = run_estimate()
    assert printed.returncode == 0, printed.stderr
    generated = blocks(printed.stdout)
    assert set(generated) == {
        "summary", "prices", "compute", "storage", "requests", "monthly", "levers",
    }  # fmt: skip
    in_doc = blocks(DOC.read_text("utf-8"))
    for name, table in generated.items():
        assert in_doc.get(name) == table, f"docs/cost.md's {name} table is stale: run --write"
    assert run_estimate("--check", str(DOC)).returncode == 0


def test_check_notices_a_changed_price(tmp_path):
    inputs = json.loads(INPUTS.read_text("utf-8"))
    for price in inputs["prices"]:
        if price["id"] == "s3_standard_storage":
            price["figure"] = 0.05
    changed = tmp_path / "prices.json"
    changed.write_text(json.dumps(inputs), "utf-8")
    result = run_estimate("--inputs", str(changed), "--check", str(DOC))
    assert result.returncode == 1
    assert "storage" in result.stdout and "monthly" in result.stdout


def test_every_price_has_a_source_and_a_date():
    prices = json.loads(INPUTS.read_text("utf-8"))["prices"]
    assert len({price["id"] for price in prices}) == len(prices)
    for price in prices:
        assert isinstance(price["figure"], int | float) and price["figure"] >= 0, price["id"]
        for field in ("item", "unit", "region", "source_title", "date_stated", "retrieved"):
            assert price[field].strip(), f"{price['id']} has no {field}"
        assert price["source_url"].startswith(("http://", "https://")), price["id"]
        assert price["retrieved"].startswith("2026-12-04"), price["id"]
        # Every price's page appears in the document's price table.
        assert price["source_url"] in DOC.read_text("utf-8"), price["id"]


def test_every_step_is_priced_with_a_known_price():
    inputs = json.loads(INPUTS.read_text("utf-8"))
    ids = {price["id"] for price in inputs["prices"]}
    for step in inputs["steps"]:
        assert step["source"], step["step"]
        if step["priced_as"] is not None:
            assert step["priced_as"]["price"] in ids, step["step"]
            assert 0 < step["priced_as"]["share"] <= 1, step["step"]
