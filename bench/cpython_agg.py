"""Plain-CPython baseline for `make bench`: the per_card_10m aggregate with the csv module.

A straightforward, idiomatic loop: csv.reader, datetime.fromisoformat for the RFC3339
timestamp, a dict keyed by (card_id, window_start) holding [n, total, mx, xborder].
Writes the same columns as `csvflow run` (window bounds as epoch seconds) to OUT.

usage: python cpython_agg.py INPUT.csv OUT.csv
prints one line on stdout: seconds=S rows=N cells=N  (time of read + aggregate + write)
"""
import csv
import sys
import time
from datetime import datetime

WINDOW = 600  # 10 minutes, aligned to the UTC epoch


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    cells: dict[tuple[str, int], list] = {}
    rows = 0
    with open(src, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        i_ts, i_card, i_amount = header.index("ts"), header.index("card_id"), header.index("amount")
        i_country, i_home = header.index("country"), header.index("home_country")
        for row in reader:
            rows += 1
            epoch = int(datetime.fromisoformat(row[i_ts]).timestamp())
            key = (row[i_card], epoch - epoch % WINDOW)
            amount = float(row[i_amount])
            xborder = row[i_country] != row[i_home]
            cell = cells.get(key)
            if cell is None:
                cells[key] = [1, amount, amount, int(xborder)]
            else:
                cell[0] += 1
                cell[1] += amount
                if amount > cell[2]:
                    cell[2] = amount
                cell[3] += xborder
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["card_id", "window_start", "window_end", "n", "total", "mx", "xborder"])
        for (card, start), (n, total, mx, xb) in cells.items():
            w.writerow([card, start, start + WINDOW, n, repr(total), repr(mx), xb])
    seconds = time.perf_counter() - t0
    print(f"seconds={seconds:.4f} rows={rows} cells={len(cells)}")


if __name__ == "__main__":
    main()
