#!/usr/bin/env python3
"""Times torch.distributed's gloo allreduce on loopback, the Gloo baseline for
`petaring bench allreduce` (docs/benchmarks.md).

Starts --np processes on this host (gloo over TCP on 127.0.0.1), and for each size from
--min to --max (doubling) runs --warmup untimed calls, then --blocks timed blocks of
--iters calls each. A block's time is the slowest rank's mean per call (a MAX allreduce
of the ranks' means); the table shows the median over blocks, in the columns of
`petaring bench allreduce`: size, count, type, redop, root, time, algbw, busbw, #wrong
(busbw = algbw x 2(n-1)/n). --check verifies one call per size against the expected sum.
--json prints one object per size (keys bytes, time_us, algbw_gbps, busbw_gbps,
transport, algorithm, np).

Needs PyTorch with gloo (Debian: python3-torch); petaring itself never does.
Example: python3 scripts/bench_gloo.py --np 2 --min 4K --max 64M
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time


def parse_size(text):
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B").rstrip("I")
    number = text.rstrip("KMG")
    return int(float(number) * units[text[len(number):]])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rank(rank, args, port, out):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=args.np)
    n = args.np
    size = args.min
    rows = []
    while size <= args.max:
        count = max(1, size // 4)
        data = torch.ones(count, dtype=torch.float32)
        wrong = "N/A"
        if args.check:
            data.fill_(float(rank + 1))
            dist.all_reduce(data)
            expected = n * (n + 1) / 2
            wrong = int((data != expected).sum().item())
            bad = torch.tensor([wrong], dtype=torch.int64)
            dist.all_reduce(bad)
            wrong = int(bad.item())
        for _ in range(args.warmup):
            dist.all_reduce(data)
        block_times = []
        for _ in range(args.blocks):
            dist.barrier()
            start = time.perf_counter()
            for _ in range(args.iters):
                dist.all_reduce(data)
            mean = (time.perf_counter() - start) / args.iters
            slowest = torch.tensor([mean], dtype=torch.float64)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            block_times.append(slowest.item())
        t = statistics.median(block_times)
        algbw = count * 4 / t / 1e9
        rows.append({"bytes": count * 4, "count": count, "time_us": round(t * 1e6, 3),
                     "algbw_gbps": round(algbw, 3),
                     "busbw_gbps": round(algbw * 2 * (n - 1) / n, 3), "wrong": wrong})
        size *= 2
    if rank == 0:
        out.put(rows)
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--np", type=int, default=2, help="processes (ranks)")
    parser.add_argument("--min", type=parse_size, default=parse_size("4K"), help="smallest size, e.g. 4K")
    parser.add_argument("--max", type=parse_size, default=parse_size("64M"), help="largest size, e.g. 64M")
    parser.add_argument("--iters", type=int, default=20, help="calls per timed block")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per size")
    parser.add_argument("--blocks", type=int, default=5, help="timed blocks per size (median reported)")
    parser.add_argument("--check", action="store_true", help="verify one call per size")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args()
    try:
        import torch  # noqa: F401
        import torch.distributed as dist
        import torch.multiprocessing as mp
    except ImportError as error:
        sys.exit(f"bench_gloo.py: PyTorch is not installed ({error}); "
                 "apt-get install python3-torch")
    if not dist.is_gloo_available():
        sys.exit("bench_gloo.py: this PyTorch has no gloo backend")
    port = free_port()
    context = mp.get_context("spawn")
    out = context.Queue()
    procs = [context.Process(target=run_rank, args=(r, args, port, out)) for r in range(args.np)]
    for p in procs:
        p.start()
    rows = out.get()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        sys.exit("bench_gloo.py: a rank failed")
    if args.json:
        for row in rows:
            print(json.dumps({"bytes": row["bytes"], "time_us": row["time_us"],
                              "algbw_gbps": row["algbw_gbps"], "busbw_gbps": row["busbw_gbps"],
                              "transport": "gloo-tcp", "algorithm": "gloo", "np": args.np}))
        return
    print(f"# torch {torch.__version__} gloo allreduce, {args.np} ranks on 127.0.0.1, "
          f"f32 sum; time: median over {args.blocks} blocks of the slowest rank's mean per "
          f"call ({args.iters} calls per block, {args.warmup} warm-up)")
    print(f"#{'size':>11} {'count':>12} {'type':>6} {'redop':>6} {'root':>5} {'time':>10} "
          f"{'algbw':>8} {'busbw':>8} {'#wrong':>7}")
    print(f"#{'(B)':>11} {'(elements)':>12} {'':>6} {'':>6} {'':>5} {'(us)':>10} "
          f"{'(GB/s)':>8} {'(GB/s)':>8} {'':>7}")
    for row in rows:
        print(f"{row['bytes']:>12} {row['count']:>12} {'f32':>6} {'sum':>6} {-1:>5} "
              f"{row['time_us']:>10.2f} {row['algbw_gbps']:>8.3f} {row['busbw_gbps']:>8.3f} "
              f"{str(row['wrong']):>7}")


if __name__ == "__main__":
    main()
