"""Time and peak memory of reading a 100,000-row recipients file, CSV and XLSX.

Each reader runs in its own process so peak RSS (VmHWM) belongs to that reader alone.
Compares Roster's reader with raw openpyxl read-only and python-calamine iteration (the two
libraries the spreadsheet issue asked us to choose between). Usage:

    .venv/bin/python bench/spreadsheet_read_bench.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADERS = ["email", "display name", "aliases", "enabled", "kind", "groups", "department", "title"]


def row(i: int) -> list[str]:
    return [
        f"user{i}@example.com",
        f"User Number {i}",
        f"u{i}@example.com;smtp:alt{i}@example.org",
        "yes" if i % 10 else "no",
        "user",
        f"team{i % 100}@example.com",
        f"Dept {i % 50}",
        "Engineer",
    ]


def generate(folder: Path, rows: int) -> dict[str, Path]:
    from openpyxl import Workbook

    csv_path = folder / "people.csv"
    with csv_path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADERS)
        writer.writerows(row(i) for i in range(rows))
    xlsx_path = folder / "people.xlsx"
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("People")
    sheet.append(HEADERS)
    for i in range(rows):
        sheet.append(row(i))
    workbook.save(xlsx_path)
    return {"csv": csv_path, "xlsx": xlsx_path}


def peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(name: str, path: Path) -> dict[str, object]:
    """Run one reader; imports happen before the clock starts and before the baseline RSS."""
    from app.connectors.spreadsheet import open_spreadsheet, read_spreadsheet

    baseline = peak_rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    count = 0
    if name == "roster-read":  # collects every SheetRow, as an import does
        result = read_spreadsheet(path, filename=path.name)
        count, errors = len(result.rows), result.error_count
        assert errors == 0, result.errors[:3]
    elif name == "roster-stream":  # rows checked and dropped: the reader's own footprint
        with open_spreadsheet(path, filename=path.name) as stream:
            for _ in stream:
                count += 1
    elif name == "openpyxl-readonly":
        from openpyxl import load_workbook

        workbook = load_workbook(path, read_only=True)
        for cells in workbook.worksheets[0].iter_rows():
            for cell in cells:
                _ = (cell.value, cell.data_type)  # data_type tells formula cells apart
            count += 1
        count -= 1
        workbook.close()
    elif name == "calamine":
        from python_calamine import CalamineWorkbook

        sheet = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
        for values in sheet.iter_rows():
            for _value in values:
                pass
            count += 1
        count -= 1
    else:
        raise SystemExit(f"unknown reader {name}")
    return {
        "reader": name,
        "file": path.suffix[1:],
        "rows": count,
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--worker", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]))))
        return
    runs = [
        ("roster-read", "csv"),
        ("roster-stream", "csv"),
        ("roster-read", "xlsx"),
        ("roster-stream", "xlsx"),
        ("openpyxl-readonly", "xlsx"),
        ("calamine", "xlsx"),
    ]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        files = generate(Path(folder), args.rows)
        sizes = {kind: path.stat().st_size for kind, path in files.items()}
        print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s: {sizes}")
        header = f"{'reader':<18} {'file':<5} {'rows':>8} {'wall s':>7} {'cpu s':>6} "
        print(header + f"{'base MiB':>9} {'peak MiB':>9}")
        for name, kind in runs:
            done = subprocess.run(
                [sys.executable, __file__, "--worker", name, str(files[kind])],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode:
                print(f"{name:<18} {kind:<5} failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(done.stdout)
            print(
                f"{r['reader']:<18} {r['file']:<5} {r['rows']:>8} {r['wall_s']:>7} "
                f"{r['cpu_s']:>6} {r['baseline_rss_mib']:>9} {r['peak_rss_mib']:>9}"
            )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
