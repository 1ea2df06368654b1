"""Sink throughput through Ray Data vs a raw lmdb put loop in one process, and with shards=1, 2, 4.

    .venv/bin/python bench/sink.py [--pages 2000] [--samples-per-page 10] [--kb 50] [--shards 1,2,4] [--reps 5]
                                   [--pages-per-block 16] [--write-mb MB | --write-batch PAGES] [--dir DIR]

Records: ~50 KB JPEG-like payloads (JPEG marker + random bytes), ~10 per page (~1 GB at the default 2000
pages: several write tasks per sink, so the shards can run in parallel), in blocks of 16 pages (the layout
job's compose batch). The raw loop writes the same keys (image/gt/meta, markers, num-samples) with one txn
per 64 MiB, with the write tasks' heap setting (``keep_freed_heap``: without it the loop itself swings by up
to 2x as glibc hands LMDB's freed pages back, which flattered the ratio before 2026-12-01); the sinks run ``write_lmdb`` on a local Ray with ``--cpus`` CPUs (workers warmed first; the data
already in the object store). All methods alternate over ``--reps`` repetitions, each starting after an
untimed ``sync`` (so no method pays for the previous one's writeback); figures are medians.

A Ray Data execution has a cost outside the write tasks (planning, the executor's start and finish, bundling
the first task's blocks, the sink's ``on_write_start``/``on_write_complete``) that the layout job pays once per
run, or overlaps with upstream work while it streams. The sink records when its first write task started and
its last one ended (``write_span``); that span, gaps between tasks and each task's env open included, is the
sink's steady-state time: ``RATIO sink_vs_raw_lmdb`` = raw s / span s with one writer, ``RATIO
sink_shards_2_vs_1`` = span of 1 shard / span of 2 shards; ``FIGURE sink_outside_tasks_s_<n>_shards`` is the
wall minus the span. The whole-wall ratio is printed too (``RATIO sink_vs_raw_lmdb_wall``). (Before
2026-12-01 the once-per-run part was estimated by a one-block probe write; that left out the bundling of the
first task's ~66 blocks, ~0.05 s here.)

Warm-up, untimed and the same for every method: one write of 200 pages (~100 MB, more than one 64 MiB
transaction) by the raw loop in the driver and by each sink in its workers, so no timed run is the first to
grow its process's heap. On this VM a repetition sometimes takes up to 4x its usual time, all of it kernel
time, in every method (the raw loop as well; the cause is outside our code and not identified, see
docs/performance.md); the bench prints the whole machine's kernel seconds per run so such
an outlier shows, and besides the medians the ratio of the fastest repetitions
(``RATIO sink_vs_raw_lmdb_best``).

The commit interval (``commit_interval_s``, default 30 s: a write task starts, and a transaction commits, at
least that often) costs one more write task and transaction per interval when pages come slower than the byte
target fills. The bench times the 1-shard sink with an interval so short that every block is its own task and
every page its own transaction (``interval`` runs, alternating with the others): ``FIGURE sink_s_per_extra_commit``
= (its median wall - the 1-shard sink's) / the extra transactions, and ``RATIO sink_commit_interval_cost`` = that
/ ``DEFAULT_COMMIT_INTERVAL_S``, the share of a writer's time the default interval can add (an upper bound: the
bench's extra commits each also pay a task start only every ``--pages-per-block`` pages).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ocrvl_ray.lmdb import LmdbSink, verify_lmdb, write_lmdb  # noqa: E402
from ocrvl_ray.lmdb import schema as S  # noqa: E402
from ocrvl_ray.lmdb.writer import DEFAULT_COMMIT_INTERVAL_S, encode_gt, keep_freed_heap  # noqa: E402
from ocrvl_ray.testing.sink import synthetic_pages  # noqa: E402


def raw_lmdb(path: str, pages) -> float:
    """The floor: plain puts of the same keys in one process, no Ray, no markers checks; with the write tasks'
    heap setting (without it this loop swings 0.68-1.0 s per GB on tmpfs as glibc returns LMDB's freed pages)."""
    import lmdb
    keep_freed_heap()
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


def kernel_s() -> float:
    """System CPU seconds of the whole machine so far (all processes, all cores; /proc/stat)."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[3]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--samples-per-page", type=int, default=10)
    ap.add_argument("--kb", type=int, default=50)
    ap.add_argument("--pages-per-block", type=int, default=16, help="Ray Data block size (the compose batch)")
    ap.add_argument("--shards", default="1,2,4", help="shard counts to run (1 = the single-LMDB sink)")
    ap.add_argument("--reps", type=int, default=5, help="alternating repetitions (medians)")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--write-mb", type=int, default=None, help="MB per write task (default: the sink's, 512)")
    ap.add_argument("--write-batch", type=int, default=None, help="pages per write task instead of --write-mb")
    ap.add_argument("--dir", default=None, help="where the LMDBs go (default: the system temp dir)")
    args = ap.parse_args()
    counts = [int(v) for v in args.shards.split(",")]

    pages = synthetic_pages(args.pages, args.samples_per_page, seed=1, payload_bytes=args.kb * 1000)
    n_rows = sum(len(p.samples) for p in pages)
    mb = sum(len(s.image) for p in pages for s in p.samples) / 1e6
    tmp = tempfile.mkdtemp(prefix="ocrvl-bench-sink-", dir=args.dir)
    opts = {} if args.write_mb is None else {"min_bytes_per_write": args.write_mb << 20}
    if args.write_batch is not None:
        opts["min_pages_per_write"] = args.write_batch
    load0 = os.getloadavg()[0]
    try:
        print(f"records: {n_rows} rows in {args.pages} pages, {mb:.0f} MB of payload")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        import ray
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        import logging

        import ray.data
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)   # no "Starting execution" lines per run
        warm = synthetic_pages(200, args.samples_per_page, seed=2, payload_bytes=args.kb * 1000)
        raw_lmdb(os.path.join(tmp, "warm-raw.lmdb"), warm)
        for n in counts:   # and the worker processes for every concurrency
            write_lmdb(ray.data.from_items([p.to_row() for p in warm], override_num_blocks=len(warm) // 16),
                       LmdbSink(os.path.join(tmp, f"warm{n}.lmdb"), n, **opts))
        ds = ray.data.from_items([p.to_row() for p in pages], override_num_blocks=-(-len(pages) // args.pages_per_block))
        ds = ds.materialize()
        runs = ["raw", *counts, *(["interval"] if 1 in counts else [])]
        wall: dict = {run: [] for run in runs}
        txns: dict = {run: [] for run in runs}
        kernel: dict = {run: [] for run in runs}
        span: dict = {run: [] for run in [*counts, "interval"]}
        for rep in range(args.reps):
            for what in (runs if rep % 2 == 0 else runs[::-1]):
                path = os.path.join(tmp, f"{what}-{rep}.lmdb")
                os.sync()   # untimed: the previous method's dirty pages must not be written back inside this timer
                k0 = kernel_s()
                if what == "raw":
                    wall[what].append(raw_lmdb(path, pages))
                else:
                    t = time.perf_counter()
                    sink = LmdbSink(path, 1, **opts, commit_interval_s=1e-6) if what == "interval" else \
                        LmdbSink(path, what, **opts)
                    summary = write_lmdb(ds, sink)
                    wall[what].append(time.perf_counter() - t)
                    txns[what].append(summary["txns"])
                    first, last = summary["write_span"]
                    span[what].append(last - first)
                kernel[what].append(kernel_s() - k0)
                if what != "raw":
                    report = verify_lmdb(path, decode=False)
                    assert report["ok"] and summary["num_samples"] == n_rows, report
                shutil.rmtree(path, ignore_errors=True)
                if what != "raw":
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path + ".shards.json")
        ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in wall.items()}
    steady = {k: statistics.median(v) for k, v in span.items()}
    raw = med["raw"]
    print(f"medians of {args.reps} alternating runs; load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores")
    runs_s = lambda vs: " ".join(f"{v:.2f}" for v in vs)   # noqa: E731
    print(f"raw lmdb put loop (1 process): {raw:.2f} s  {n_rows / raw:,.0f} rows/s  (runs: {runs_s(wall['raw'])}; "
          f"kernel s, whole machine: {runs_s(kernel['raw'])})")
    for n in counts:
        outside = statistics.median(w - s for w, s in zip(wall[n], span[n]))
        print(f"{'LmdbSink' if n == 1 else f'LmdbSink, {n} shards'} via Ray Data: {med[n]:.2f} s wall, "
              f"{steady[n]:.2f} s from the first write task's start to the last one's end "
              f"(runs: {runs_s(span[n])}; kernel s: {runs_s(kernel[n])}); steady state {n_rows / steady[n]:,.0f} rows/s "
              f"({mb / steady[n]:.0f} MB/s)")
        print(f"FIGURE sink_outside_tasks_s_{n}_shards {outside:.3f} s")
        print(f"FIGURE sink_rows_per_s_{n}_shards {n_rows / steady[n]:.0f} rows/s")
    if 1 in counts:
        print(f"RATIO sink_vs_raw_lmdb_wall {raw / med[1]:.3f}")
        print(f"RATIO sink_vs_raw_lmdb {raw / steady[1]:.3f}")
        print(f"RATIO sink_vs_raw_lmdb_best {min(wall['raw']) / min(span[1]):.3f}")
    if 1 in counts:
        extra = statistics.median(txns["interval"]) - statistics.median(txns[1])
        per_commit = (med["interval"] - med[1]) / extra
        print(f"commit every page, a task per block: {med['interval']:.2f} s wall, {extra:.0f} more transactions "
              f"(runs: {runs_s(wall['interval'])})")
        print(f"FIGURE sink_s_per_extra_commit {per_commit:.4f} s")
        print(f"RATIO sink_commit_interval_cost {per_commit / DEFAULT_COMMIT_INTERVAL_S:.5f}")
    if 1 in counts and 2 in counts:
        print(f"RATIO sink_shards_2_vs_1 {steady[1] / steady[2]:.3f}")

if __name__ == "__main__":
    main()
