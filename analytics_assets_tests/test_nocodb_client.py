"""The NocoDB client against the real NocoDB server."""

from __future__ import annotations

import pytest

from analytics_assets.nocodb.client import NocoDBClient, day_filter
from analytics_assets.nocodb.errors import (
    NocoDBAuthError,
    NocoDBInvalidOffsetError,
    NocoDBNotFoundError,
    NocoDBQueryError,
)
from analytics_assets.sources.seed import create_base, create_table

pytestmark = pytest.mark.nocodb

COLUMNS = [
    ("key", "SingleLineText"),
    ("n", "Number"),
    ("text", "LongText"),
    ("created_at", "DateTime"),
]
ROWS = 2345


@pytest.fixture(scope="module")
def tables(nocodb) -> dict[str, str]:
    from analytics_assets_tests.conftest import make_client

    with make_client(nocodb) as client:
        base_id = create_base(client, "client_tests")
        ids = {
            "numbers": create_table(client, base_id, "numbers", COLUMNS),
            "no_id": create_table(client, base_id, "no_id", COLUMNS, with_id=False),
            "empty": create_table(client, base_id, "empty", COLUMNS),
        }
        records = [
            {
                "key": f"k{n:05d}",
                "n": n,
                "text": "naïve café 🎉 中文 русский" if n % 100 == 0 else f"row {n}",
                "created_at": f"2026-11-{1 + n % 3:02d} {n % 24:02d}:00:00+00:00",
            }
            for n in range(ROWS)
        ]
        client.insert_records(ids["numbers"], records)
        client.insert_records(ids["no_id"], records[:250])
    return {"base_id": base_id, **ids}


def test_full_pagination_over_many_pages_returns_every_row_once(nocodb_client, tables):
    pages = list(nocodb_client.iter_pages(tables["numbers"], sort="Id", page_size=400))
    assert len(pages) == 6
    assert [page.offset for page in pages] == [0, 400, 800, 1200, 1600, 2000]
    assert [page.is_last for page in pages] == [False] * 5 + [True]
    keys = [record["key"] for page in pages for record in page.records]
    assert len(keys) == ROWS
    assert keys == sorted({f"k{n:05d}" for n in range(ROWS)})


def test_requested_limit_above_the_cap_still_pages_correctly(nocodb_client, tables):
    pages = list(nocodb_client.iter_pages(tables["numbers"], page_size=5000))
    assert [len(page.records) for page in pages] == [1000, 1000, 345]
    assert len({record["Id"] for page in pages for record in page.records}) == ROWS


def test_keyset_pages_go_on_past_a_server_that_caps_the_page_size(nocodb_client, tables):
    """A page shorter than asked was taken for the last one: on a server whose page cap is
    below the limit asked (DB_QUERY_LIMIT_MAX, here 300 as the server applies it), every
    day's pull stopped after its first page. NocoDB's `isLastPage` says when to stop."""
    send = nocodb_client.request

    def capped(method, path, **options):
        params = dict(options.get("params") or {})
        if "limit" in params:
            params["limit"] = min(int(params["limit"]), 300)
        return send(method, path, **{**options, "params": params})

    nocodb_client.request = capped
    try:
        pages = list(nocodb_client.iter_keyset(
            tables["numbers"], "Id", after=-1, up_to=2**53 - 1, page_size=1000,
            where="(n,ge,100)",
        ))  # fmt: skip
    finally:
        nocodb_client.request = send
    ids = [record["Id"] for page in pages for record in page.records]
    assert len(ids) == ROWS - 100 == len(set(ids))
    assert [page.is_last for page in pages][-1] and len(pages) == -(-(ROWS - 100) // 300)


def test_where_sort_and_fields(nocodb_client, tables):
    from datetime import date

    records = list(
        nocodb_client.iter_records(
            tables["numbers"],
            where=day_filter("created_at", date(2026, 11, 2)) + "~and(n,lt,100)",
            sort=["-n"],
            fields=["key", "n"],
        )
    )
    expected = [n for n in range(99, -1, -1) if n % 3 == 1]
    assert [record["n"] for record in records] == expected
    assert set(records[0]) == {"key", "n"}


def test_unicode_and_emoji_round_trip(nocodb_client, tables):
    records = list(nocodb_client.iter_records(tables["numbers"], where="(n,eq,300)"))
    assert records[0]["text"] == "naïve café 🎉 中文 русский"


def test_table_without_id_pages_by_its_key(nocodb_client, tables):
    info = nocodb_client.table_info("no_id", base_id=tables["base_id"])
    assert info.primary_key is None
    assert "Id" not in info.columns
    records = list(nocodb_client.iter_records(info.id, sort="key", page_size=100))
    assert [record["key"] for record in records] == [f"k{n:05d}" for n in range(250)]
    assert all("Id" not in record for record in records)


def test_empty_table_yields_one_empty_last_page(nocodb_client, tables):
    pages = list(nocodb_client.iter_pages(tables["empty"]))
    assert len(pages) == 1
    assert pages[0].records == []
    assert pages[0].is_last


def test_table_titles_resolve_to_ids(nocodb_client, tables):
    info = nocodb_client.table_info("numbers", base_id=tables["base_id"])
    assert info.id == tables["numbers"]
    assert info.primary_key == "Id"
    assert {"key", "n", "text", "created_at", "CreatedAt", "UpdatedAt"} <= set(info.columns)


def test_bad_token_is_a_typed_error_naming_the_setting(nocodb, tables):
    with (
        NocoDBClient(nocodb.url, "not-a-token", requests_per_second=0) as client,
        pytest.raises(NocoDBAuthError, match="NOCODB_API_TOKEN") as raised,
    ):
        list(client.iter_records(tables["numbers"]))
    assert raised.value.status_code == 401
    assert "not-a-token" not in str(raised.value)


def test_unknown_table_and_field_are_typed_errors(nocodb_client, tables):
    with pytest.raises(NocoDBNotFoundError) as raised:
        list(nocodb_client.iter_records("mnosuchtable000"))
    assert raised.value.code == "TABLE_NOT_FOUND"
    with pytest.raises(NocoDBNotFoundError, match="source mapping"):
        list(nocodb_client.iter_records(tables["numbers"], sort="nope"))
    with pytest.raises(NocoDBQueryError):
        list(nocodb_client.iter_records(tables["numbers"], where="(nope,eq,1)"))
    with pytest.raises(NocoDBNotFoundError, match="No NocoDB table"):
        nocodb_client.table_info("no such title", base_id=tables["base_id"])


def test_offset_past_the_end_is_a_typed_error(nocodb_client, tables):
    with pytest.raises(NocoDBInvalidOffsetError) as raised:
        list(nocodb_client.iter_pages(tables["numbers"], start_offset=ROWS + 500))
    assert raised.value.code == "INVALID_OFFSET_VALUE"


def test_client_repr_hides_the_token(nocodb):
    client = NocoDBClient(nocodb.url, "secret-token-value")
    assert "secret-token-value" not in repr(client)
    client.close()
