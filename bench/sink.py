"""LmdbSink throughput through Ray Data vs a raw lmdb put loop in one process, over the same records.

    .venv/bin/python bench/sink.py [--pages 500] [--samples-per-page 10] [--kb 50]

Records: ~50 KB JPEG-like payloads (JPEG marker + random bytes), ~10 per page. The raw loop writes the
same keys (image/gt/meta, markers, num-samples) with one txn per 64 MiB; the sink runs
``from_items -> write_lmdb`` on a local Ray with 2 CPUs (workers warmed first; the timed part is
``write_lmdb``, the data already in the object store).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ocrvl_ray.core import lmdb_schema as S  # noqa: E402
from ocrvl_ray.layout.sink import LmdbSink, verify_lmdb, write_lmdb  # noqa: E402
from ocrvl_ray.layout.sink.writer import encode_gt  # noqa: E402
from ocrvl_ray.testing.sink import synthetic_pages  # noqa: E402


def raw_lmdb(path: str, pages) -> float:
    """The floor: plain puts of the same keys in one process, no Ray, no markers checks."""
    import lmdb
    t = time.perf_counter()
    env = lmdb.open(path, map_size=4 << 30)
    n, batch = 0, []
    def flush():
        nonlocal n
        with env.begin(write=True) as txn:
            for p in batch:
                first = n + 1
                for s in p.samples:
                    n += 1
                    txn.put(S.key(S.IMAGE_FMT, n), s.image)
                    txn.put(S.key(S.GT_FMT, n), encode_gt(s))
                    txn.put(S.key(S.META_FMT, n), s.meta.encode())
                txn.put(S.page_key(p.page_id), json.dumps({"first": first, "count": len(p.samples),
                                                            "status": p.status}).encode())
            txn.put(S.NUM_SAMPLES, str(n).encode())
        batch.clear()
    size = 0
    for p in pages:
        batch.append(p)
        size += sum(len(s.image) for s in p.samples)
        if size >= 64 << 20:
            flush()
            size = 0
    flush()
    env.close()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=500)
    ap.add_argument("--samples-per-page", type=int, default=10)
    ap.add_argument("--kb", type=int, default=50)
    ap.add_argument("--blocks", type=int, default=50, help="Ray Data blocks (= write tasks)")
    args = ap.parse_args()

    pages = synthetic_pages(args.pages, args.samples_per_page, seed=1, payload_bytes=args.kb * 1000)
    rows = sum(len(p.samples) for p in pages)
    mb = sum(len(s.image) for p in pages for s in p.samples) / 1e6
    tmp = tempfile.mkdtemp(prefix="ocrvl-bench-sink-")
    try:
        t_raw = raw_lmdb(os.path.join(tmp, "raw.lmdb"), pages)
        print(f"records: {rows} rows in {len(pages)} pages, {mb:.0f} MB of payload")
        print(f"raw lmdb put loop (1 process): {t_raw:.2f} s  {rows / t_raw:,.0f} rows/s")

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        import ray
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        import ray.data
        ray.data.DataContext.get_current().enable_progress_bars = False
        warm = synthetic_pages(8, seed=2)
        write_lmdb(ray.data.from_items([p.to_row() for p in warm], override_num_blocks=2),
                   LmdbSink(os.path.join(tmp, "warm.lmdb")))

        t = time.perf_counter()
        ds = ray.data.from_items([p.to_row() for p in pages], override_num_blocks=args.blocks).materialize()
        t_items = time.perf_counter() - t
        sink = LmdbSink(os.path.join(tmp, "sink.lmdb"))
        t = time.perf_counter()
        summary = write_lmdb(ds, sink)
        t_sink = time.perf_counter() - t
        report = verify_lmdb(sink.path, decode=False)
        assert report["ok"] and summary["num_samples"] == rows, report
        print(f"from_items+materialize (not timed below): {t_items:.2f} s")
        print(f"LmdbSink via Ray Data (defaults), {summary['write_tasks']} write tasks: {t_sink:.2f} s  "
              f"{rows / t_sink:,.0f} rows/s  ({mb / t_sink:.0f} MB/s)")
        unbundled = LmdbSink(os.path.join(tmp, "unbundled.lmdb"), min_pages_per_write=None)
        t = time.perf_counter()
        s2 = write_lmdb(ds, unbundled)
        t_unbundled = time.perf_counter() - t
        print(f"LmdbSink, min_pages_per_write=None ({s2['write_tasks']} write tasks, one per block): "
              f"{t_unbundled:.2f} s  {rows / t_unbundled:,.0f} rows/s")
        ray.shutdown()
        print(f"FIGURE sink_rows_per_s {rows / t_sink:.0f} rows/s")
        print(f"RATIO sink_vs_raw_lmdb {t_raw / t_sink:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
