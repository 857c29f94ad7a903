"""Opens a `logbook export` directory with pandas, pyarrow (read_table and dataset), Polars and
DuckDB, each with no flags, and checks that they agree with the export: the row count, the
tenant partitions, a JSON field of `data` (the sum of the amounts of PAYMENT_CONFIRMED events)
and the count of NULL `meta` (events without metadata), each against the same figure taken
file by file from the manifest's list.

Usage: python read_export.py <export dir> <expected rows>
Run by .ci/run (in a virtualenv with the four readers installed); exits non-zero on any
difference, naming the reader.
"""

import json
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq


COLUMNS = ["position", "stream", "version", "type", "time", "id", "data", "meta", "data_encoding", "meta_encoding"]


def main() -> int:
    root, rows = sys.argv[1], int(sys.argv[2])
    failures = []

    def check(reader, what, got, expected):
        status = "ok" if got == expected else "FAILED"
        print(f"{reader:22} {what:32} {got!r:>14} (expected {expected!r}) {status}")
        if got != expected:
            failures.append(f"{reader}: {what} is {got!r}, expected {expected!r}")

    def payment_total(amounts):
        return sum(int(json.loads(text)["amount"]["amount"]) for text in amounts)

    # The reference: each file of the manifest on its own (no directory, no schema merge).
    with open(f"{root}/_manifest.json") as f:
        manifest = json.load(f)
    payments, listed, null_meta = 0, 0, 0
    tenants = sorted({entry["tenant"] for entry in manifest["files"]})
    for entry in manifest["files"]:
        part = pq.ParquetFile(f"{root}/{entry['path']}").read()
        listed += part.num_rows
        null_meta += part["meta"].null_count
        types, data = part["type"].to_pylist(), part["data"].to_pylist()
        payments += payment_total(d for t, d in zip(types, data) if t == "PAYMENT_CONFIRMED")
        if part.column_names != COLUMNS:
            failures.append(f"{entry['path']}: columns {part.column_names}, expected {COLUMNS}")
    check("file by file", "rows", listed, rows)
    if payments == 0:
        failures.append("the export holds no PAYMENT_CONFIRMED amounts to compare")

    # pandas (through pyarrow's dataset: hive partitions become columns).
    df = pd.read_parquet(root)
    check("pandas.read_parquet", "rows", len(df), rows)
    check("pandas.read_parquet", "tenant partition", sorted(df["tenant"].astype(str).unique()), tenants)
    paid = df[df["type"] == "PAYMENT_CONFIRMED"]["data"]
    check("pandas.read_parquet", "sum of data.amount.amount", payment_total(paid), payments)
    check("pandas.read_parquet", "NULL meta rows", int(df["meta"].isna().sum()), null_meta)
    check("pandas.read_parquet", "meta NULL iff meta_encoding NULL",
          bool((df["meta"].isna() == df["meta_encoding"].isna()).all()), True)

    # pyarrow: read_table and dataset.
    table = pq.read_table(root)
    check("pyarrow.read_table", "rows", table.num_rows, rows)
    check("pyarrow.read_table", "columns tenant, date", "tenant" in table.column_names and "date" in table.column_names, True)
    paid = [d for t, d in zip(table["type"].to_pylist(), table["data"].to_pylist()) if t == "PAYMENT_CONFIRMED"]
    check("pyarrow.read_table", "sum of data.amount.amount", payment_total(paid), payments)
    dataset = ds.dataset(root)
    check("pyarrow.dataset", "rows", dataset.count_rows(), rows)
    filtered = dataset.to_table(filter=ds.field("type") == "PAYMENT_CONFIRMED", columns=["data"])
    check("pyarrow.dataset", "sum of data.amount.amount", payment_total(filtered["data"].to_pylist()), payments)

    # Polars: a glob, like DuckDB's (given a directory, Polars refuses one that holds files of
    # two extensions, and the manifest is JSON); with a glob it adds no partition columns.
    frame = pl.read_parquet(f"{root}/**/*.parquet")
    check("polars.read_parquet", "rows", frame.height, rows)
    paid = frame.filter(pl.col("type") == "PAYMENT_CONFIRMED")["data"].to_list()
    check("polars.read_parquet", "sum of data.amount.amount", payment_total(paid), payments)
    check("polars.read_parquet", "NULL meta rows", frame["meta"].null_count(), null_meta)

    # DuckDB: `data` is a JSON column, so JSON operators work on it directly.
    con = duckdb.connect()
    source = f"'{root}/**/*.parquet'"
    (count,) = con.execute(f"SELECT count(*) FROM {source}").fetchone()
    check("duckdb", "rows", count, rows)
    (data_type,) = con.execute(f"SELECT typeof(data) FROM {source} LIMIT 1").fetchone()
    check("duckdb", "type of data", data_type, "JSON")
    (total,) = con.execute(
        f"SELECT sum(CAST(data->'amount'->>'amount' AS BIGINT)) FROM {source} WHERE type = 'PAYMENT_CONFIRMED'"
    ).fetchone()
    check("duckdb", "sum of data->amount->>amount", int(total or 0), payments)
    (total,) = con.execute(
        f"SELECT sum(CAST(data.amount.amount AS BIGINT)) FROM {source} WHERE type = 'PAYMENT_CONFIRMED'"
    ).fetchone()
    check("duckdb", "sum of data.amount.amount", int(total or 0), payments)
    (found,) = con.execute(f"SELECT list(DISTINCT tenant) FROM {source}").fetchone()
    check("duckdb", "tenant partition", sorted(found), tenants)
    (nulls,) = con.execute(f"SELECT count(*) FROM {source} WHERE meta IS NULL").fetchone()
    check("duckdb", "NULL meta rows", nulls, null_meta)

    if failures:
        print("\n".join(["", "interop FAILED:"] + failures), file=sys.stderr)
        return 1
    print(f"interop ok: pandas, pyarrow (read_table, dataset), Polars and DuckDB read {rows} rows with no flags")
    return 0


if __name__ == "__main__":
    sys.exit(main())
