"""Cost per million messages from the repository's figures and public list prices.

Reads `docs/cost_prices.json` (prices with their page and date, the project's measured figures,
labelled assumptions) and prints the generated tables of `docs/cost.md`, each between
`<!-- estimate:NAME -->` and `<!-- /estimate:NAME -->`, so the document's numbers can be
reproduced and cannot drift from their inputs (`analytics_assets_tests/test_cost.py`).

    python scripts/cost/estimate.py                 # print every table
    python scripts/cost/estimate.py --write docs/cost.md   # replace the tables in the doc
    python scripts/cost/estimate.py --check docs/cost.md   # exit 1 when the doc differs

Standard library only: it runs without the project's environment.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "docs" / "cost_prices.json"
MILLION = 1_000_000


def load(path: Path = INPUTS) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def usd(value: float) -> str:
    """Dollars with enough digits to show cents of a cent, never in scientific notation."""
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    digits = max(2, 2 - math.floor(math.log10(abs(value))) + 1)
    text = f"{value:.{digits}f}".rstrip("0")
    return "$" + (text + "0" if len(text.split(".")[1]) < 2 else text)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


class Estimate:
    """Every generated table, computed from one inputs file."""

    def __init__(self, inputs: dict):
        self.inputs = inputs
        self.prices = {price["id"]: price for price in inputs["prices"]}
        self.assume = inputs["assumptions"]
        self.deployment = inputs["deployment"]

    def price(self, price_id: str) -> float:
        return self.prices[price_id]["figure"]

    # -- compute ---------------------------------------------------------------------------

    def seconds_per_million(self, step: dict) -> float:
        return MILLION / step["msg_per_s"]

    def hourly(self, priced_as: dict) -> float:
        return self.price(priced_as["price"]) * priced_as["share"]

    def compute_per_million(self, step: dict) -> float | None:
        if step["priced_as"] is None:
            return None
        return self.seconds_per_million(step) / 3600 * self.hourly(step["priced_as"])

    def pipeline_steps(self) -> list[dict]:
        return [step for step in self.inputs["steps"] if step["in_pipeline"]]

    def cpu_pipeline_per_million(self) -> float:
        return sum(self.compute_per_million(step) for step in self.pipeline_steps())

    def step(self, prefix: str) -> dict:
        return next(s for s in self.inputs["steps"] if s["step"].startswith(prefix))

    def compute_table(self) -> str:
        rows = []
        for step in self.inputs["steps"]:
            seconds = self.seconds_per_million(step)
            approx = "~" if step.get("approx") else ""
            cost = self.compute_per_million(step)
            priced = step["priced_as"]
            rows.append(
                [
                    step["step"],
                    f"{approx}{step['msg_per_s']:,} msg/s",
                    step["machine"],
                    f"{approx}{seconds:,.1f}",
                    "— (a part of the row above)" if priced is None else priced["label"],
                    "—" if priced is None else usd(self.hourly(priced)),
                    "—" if cost is None else approx + usd(cost),
                    step["source"],
                ]
            )
        header = [
            "step", "measured", "machine", "s per 1M messages", "priced as", "$ per hour",
            "$ per 1M messages", "source",
        ]  # fmt: skip
        return table(header, rows)

    # -- storage ---------------------------------------------------------------------------

    TIERS = (
        ("S3 Standard", "s3_standard_storage"),
        ("S3 Standard-IA", "s3_standard_ia_storage"),
        ("S3 Glacier Instant Retrieval", "s3_glacier_ir_storage"),
    )

    def gb_per_million(self, bytes_per_message: float) -> float:
        return bytes_per_message * MILLION / self.assume["gb"]

    def real_text_bytes(self, level: str = "3") -> float:
        return self.inputs["lake_bytes"]["texts"][0]["bytes_per_message"][level]

    def storage_table(self) -> str:
        rows = []
        for text in self.inputs["lake_bytes"]["texts"]:
            size = text["bytes_per_message"]["3"]
            gb = self.gb_per_million(size)
            rows.append(
                [text["text"], f"{size:,.1f}", f"{gb:.4f}"]
                + [usd(gb * self.price(price_id)) for _, price_id in self.TIERS]
            )
        header = ["chat text", "lake bytes per message (zstd 3)", "GB per 1M messages"] + [
            f"$ per 1M messages per month, {name}" for name, _ in self.TIERS
        ]
        return table(header, rows)

    # -- requests --------------------------------------------------------------------------

    def put_requests_per_day(self) -> int:
        """One PUT per asset-day; the largest file (messages) as a multipart upload above
        s3fs's single-PUT limit: create + one request per part + complete."""
        messages_file = self.real_text_bytes() * self.assume["messages_per_day"]
        assets = self.deployment["lake_assets"]
        if messages_file < self.deployment["s3fs_single_put_below_bytes"]:
            return assets
        parts = math.ceil(messages_file / self.deployment["s3fs_part_bytes"])
        return assets - 1 + parts + 2

    def requests_table(self) -> str:
        per_day = self.assume["messages_per_day"]
        scale = MILLION / per_day
        puts = self.put_requests_per_day() * scale
        pages = MILLION / self.deployment["nocodb_page_size"]
        transitions = self.deployment["lake_assets"] * scale
        rows = [
            [
                "NocoDB pages read (messages table; plus the conversations table)",
                f"{pages:,.0f}",
                "none from AWS: NocoDB's own host, outside this bill",
                "$0",
            ],
            [
                "S3 PUT-class requests writing the lake (one per asset-day, multipart for the"
                " messages file)",
                f"{puts:,.0f}",
                f"{usd(self.price('s3_standard_put'))} per 1,000",
                usd(puts / 1000 * self.price("s3_standard_put")),
            ],
            [
                "S3 lifecycle transitions, if day files move to a colder class (one per"
                " asset-day file)",
                f"{transitions:,.0f}",
                f"{usd(self.price('s3_lifecycle_transition'))} per 1,000 (upper end)",
                usd(transitions / 1000 * self.price("s3_lifecycle_transition")),
            ],
            [
                "S3 GET requests: 1,000 range reads (not measured; shown for scale)",
                "1,000",
                f"{usd(self.price('s3_standard_get'))} per 1,000",
                usd(self.price("s3_standard_get")),
            ],
            [
                "data transfer EC2 to and from S3 in the same region",
                "—",
                usd(self.price("s3_ec2_same_region_transfer")) + " per GB",
                "$0",
            ],
        ]
        header = [
            f"requests per 1M messages (at {per_day:,} messages a day)",
            "count",
            "price",
            "$ per 1M messages",
        ]
        return table(header, rows)

    # -- monthly example -------------------------------------------------------------------

    def monthly_lines(self) -> list[tuple[str, float, float]]:
        """(line, CPU only, GPU for the model tier) in dollars per month."""
        a, d = self.assume, self.deployment
        millions_per_month = a["messages_per_day"] * a["days_per_month"] / MILLION
        hours = a["hours_per_month"]
        model_cpu = self.compute_per_million(self.step("categorization, model tier (use"))
        model_gpu = self.compute_per_million(self.step("categorization, model tier on GPU"))
        other = self.cpu_pipeline_per_million() - model_cpu
        kept_gb = self.gb_per_million(self.real_text_bytes()) * (
            a["messages_per_day"] * a["retention_days"] / MILLION
        )
        puts = self.put_requests_per_day() * a["days_per_month"]
        control = self.price("eks_control_plane") * hours
        nodes = d["cpu_pool_min_nodes"] * self.price(d["cpu_pool_type"]) * hours
        mongo = self.price(d["mongodb_instance_size"]) * hours
        storage = kept_gb * self.price("s3_standard_storage")
        requests = puts / 1000 * self.price("s3_standard_put")
        return [
            ("EKS control plane (one cluster)", control, control),
            (
                f"CPU pool minimum: {d['cpu_pool_min_nodes']} × m7i.xlarge on-demand, always on",
                nodes,
                nodes,
            ),
            ("MongoDB Atlas M30 (the module's default size)", mongo, mongo),
            (
                "model tier: 2 CPU cores (CPU only) or ⅛ of an H200 node",
                model_cpu * millions_per_month,
                model_gpu * millions_per_month,
            ),
            (
                "language detection + PII on 2 CPU cores",
                other * millions_per_month,
                other * millions_per_month,
            ),
            (
                f"lake: the messages files of {a['retention_days']} days on S3 Standard",
                storage,
                storage,
            ),
            ("S3 PUT requests writing the lake", requests, requests),
        ]

    def monthly_table(self) -> str:
        lines = self.monthly_lines()
        rows = [[line, usd(cpu), usd(gpu)] for line, cpu, gpu in lines]
        rows.append(
            [
                "**total**",
                f"**{usd(sum(cpu for _, cpu, _ in lines))}**",
                f"**{usd(sum(gpu for _, _, gpu in lines))}**",
            ]
        )
        per_day = self.assume["messages_per_day"]
        header = [
            f"a month at {per_day:,} messages a day ({self.assume['hours_per_month']} h)",
            "CPU only",
            "GPU node for the model tier",
        ]
        return table(header, rows)

    # -- levers ----------------------------------------------------------------------------

    def compression_lever(self, level: str) -> list[str]:
        """Storage saved per million messages a month against the extra encoding CPU, once."""
        text = self.inputs["lake_bytes"]["texts"][0]
        saved_gb = self.gb_per_million(text["bytes_per_message"]["3"]) - self.gb_per_million(
            text["bytes_per_message"][level]
        )
        saved_month = saved_gb * self.price("s3_standard_storage")
        rates = text["encode_msg_per_s"]
        extra_s = MILLION / rates[level] - MILLION / rates["3"]
        extra = extra_s / 3600 * self.price("ec2_m7i_xlarge") * 0.5
        months = extra / saved_month
        return [
            f"zstd level 3 → {level}",
            f"{saved_gb * 1000:.1f} MB less per 1M messages on real text; encoding costs "
            f"{extra_s:,.0f} s more per 1M",
            f"{usd(saved_month)} per 1M messages per month kept, against {usd(extra)} once: "
            f"pays back after {months:,.1f} months kept",
        ]

    def levers_table(self) -> str:
        a = self.assume
        lake = self.inputs["lake_bytes"]
        gb = self.gb_per_million(self.real_text_bytes())
        standard = self.price("s3_standard_storage")
        per_month_kept = gb * standard
        month_of_messages = a["messages_per_day"] * a["days_per_month"] / MILLION
        nodes = (
            self.deployment["cpu_pool_min_nodes"]
            * self.price(self.deployment["cpu_pool_type"])
            * a["hours_per_month"]
        )
        spot = self.price("spot_max_discount")
        lines = self.monthly_lines()
        gpu_extra = lines[3][2] - lines[3][1]
        executor = self.inputs["executor"]
        saved_s_per_day = (executor["process_per_step_s"] - executor["one_process_s"]) / executor[
            "days"
        ]
        executor_month = (
            saved_s_per_day * a["days_per_month"] / 3600 * self.price("ec2_m7i_xlarge") * 0.5
        )
        ia_gb = gb * a["messages_per_day"] * (a["retention_days"] - a["standard_ia_after_days"])
        ia_gb /= MILLION
        ia_saving = ia_gb * (standard - self.price("s3_standard_ia_storage"))
        transitions = (
            self.deployment["lake_assets"]
            * a["days_per_month"]
            / 1000
            * self.price("s3_lifecycle_transition")
        )
        rows = [
            self.compression_lever("9"),
            self.compression_lever("19"),
            [
                "row-group size",
                f"16k rows: {lake['row_group_size_factor']['16k rows']}× the size; 512k+ rows:"
                f" {lake['row_group_size_factor']['512k+ rows']}× but slower filtered scans",
                f"16k would add {usd(per_month_kept * 1.7)}, 512k would save "
                f"{usd(per_month_kept * 0.3)} per 1M messages per month kept",
            ],
            [
                "retention",
                "each month of messages kept in the lake, on S3 Standard",
                f"{usd(per_month_kept * month_of_messages)} per month at "
                f"{a['messages_per_day']:,} messages a day, for each month less kept",
            ],
            [
                f"S3 Standard-IA after {a['standard_ia_after_days']} days"
                " (the lake module's default)",
                f"days {a['standard_ia_after_days'] + 1} to {a['retention_days']} of the "
                "messages files in Standard-IA; reads of them pay retrieval "
                f"({usd(self.price('s3_ia_retrieval'))} per GB)",
                f"{usd(ia_saving)} a month, less {usd(transitions)} of transitions",
            ],
            [
                "GPU only for the model tier",
                "at this volume the 2-core CPU path is cheaper than an H200 share",
                f"CPU only saves {usd(gpu_extra)} a month (before a GPU node's start-up time,"
                " which is billed too)",
            ],
            [
                "spot nodes for the CPU pool (the module's default)",
                f"up to {spot:.0%} off on-demand; runs are idempotent per day",
                f"up to {usd(nodes * spot)} a month on the 2 always-on nodes",
            ],
            [
                "rules tier instead of the model tier",
                "no model at all",
                f"{usd(self.compute_per_million(self.step('categorization, model tier (use')))}"
                " per 1M messages",
            ],
            [
                "fewer, larger runs",
                f"{executor['process_per_step_s']} s against {executor['one_process_s']} s for"
                f" a {executor['days']}-day run",
                f"{usd(executor_month)} a month of CPU at one run a day",
            ],
        ]
        return table(["lever", "effect", "money"], rows)

    # -- prices ----------------------------------------------------------------------------

    def prices_table(self) -> str:
        rows = [
            [
                p["item"],
                f"{p['figure']:g}",
                p["unit"],
                p["region"],
                f"[{p['source_title']}]({p['source_url']})",
                p["date_stated"],
                p["retrieved"],
            ]
            for p in self.inputs["prices"]
        ]
        header = ["item", "figure", "unit", "region", "source", "date stated", "retrieved"]
        return table(header, rows)

    def summary(self) -> str:
        a = self.assume
        compute = self.cpu_pipeline_per_million()
        storage = self.gb_per_million(self.real_text_bytes()) * self.price("s3_standard_storage")
        puts = self.put_requests_per_day() * MILLION / a["messages_per_day"]
        requests = puts / 1000 * self.price("s3_standard_put")
        rows = [
            ["compute: model tier + language + PII on 2 CPU cores", usd(compute)],
            ["storage: the messages file on S3 Standard, per month kept", usd(storage)],
            [f"requests: S3 PUTs at {a['messages_per_day']:,} messages a day", usd(requests)],
        ]
        return table(["per 1M messages", "$"], rows)

    def blocks(self) -> dict[str, str]:
        return {
            "summary": self.summary(),
            "prices": self.prices_table(),
            "compute": self.compute_table(),
            "storage": self.storage_table(),
            "requests": self.requests_table(),
            "monthly": self.monthly_table(),
            "levers": self.levers_table(),
        }


def render(blocks: dict[str, str]) -> str:
    return "\n\n".join(
        f"<!-- estimate:{name} -->\n{body}\n<!-- /estimate:{name} -->"
        for name, body in blocks.items()
    )


BLOCK = re.compile(r"<!-- estimate:(\w+) -->\n(.*?)\n?<!-- /estimate:\1 -->", re.DOTALL)


def blocks_in(text: str) -> dict[str, str]:
    return {match.group(1): match.group(2) for match in BLOCK.finditer(text)}


def replace_blocks(text: str, blocks: dict[str, str]) -> str:
    def swap(match: re.Match) -> str:
        name = match.group(1)
        return f"<!-- estimate:{name} -->\n{blocks[name]}\n<!-- /estimate:{name} -->"

    return BLOCK.sub(swap, text)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=Path, default=INPUTS)
    parser.add_argument("--write", type=Path, help="replace the tables in this document")
    parser.add_argument("--check", type=Path, help="exit 1 when this document's tables differ")
    args = parser.parse_args()
    blocks = Estimate(load(args.inputs)).blocks()
    if args.write:
        args.write.write_text(replace_blocks(args.write.read_text("utf-8"), blocks), "utf-8")
        return 0
    if args.check:
        found = blocks_in(args.check.read_text("utf-8"))
        stale = sorted(name for name in blocks if found.get(name) != blocks[name])
        if stale:
            print(f"{args.check}: tables differ from the estimate: {', '.join(stale)}")
            return 1
        return 0
    print(render(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
