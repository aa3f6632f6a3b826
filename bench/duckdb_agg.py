"""DuckDB baseline for `make bench`: the per_card_10m aggregate on ONE thread.

10-minute tumbling windows aligned to the UTC epoch, per card_id: count, sum(amount),
max(amount), count of rows where country <> home_country. Reads the CSV with explicit
column types (ts as TIMESTAMP through DuckDB's own ISO-8601 parser, amount as DOUBLE, as
in the pipeline) and writes the same columns as `csvflow run` (window bounds as epoch
seconds) to OUT.

usage: python duckdb_agg.py INPUT.csv OUT.csv
prints one line on stdout: seconds=S cells=N  (time of connect + query + write)
"""
import sys
import time

import duckdb

COLUMNS = {
    "ts": "TIMESTAMP",
    "txn_id": "VARCHAR",
    "card_id": "VARCHAR",
    "merchant": "VARCHAR",
    "amount": "DOUBLE",
    "currency": "VARCHAR",
    "country": "VARCHAR",
    "home_country": "VARCHAR",
    "channel": "VARCHAR",
}

QUERY = """
COPY (
    SELECT card_id,
           epoch(ts)::BIGINT // 600 * 600       AS window_start,
           epoch(ts)::BIGINT // 600 * 600 + 600 AS window_end,
           count(*)                             AS n,
           sum(amount)                          AS total,
           max(amount)                          AS mx,
           count_if(country <> home_country)    AS xborder
    FROM read_csv($input, header = true, auto_detect = false, delim = ',',
                  columns = $columns)
    GROUP BY ALL
) TO '{out}' (FORMAT csv, HEADER true)
"""


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute(QUERY.format(out=out.replace("'", "''")), {"input": src, "columns": COLUMNS})
    seconds = time.perf_counter() - t0
    cells = sum(1 for _ in open(out)) - 1
    print(f"seconds={seconds:.4f} cells={cells}")


if __name__ == "__main__":
    main()
