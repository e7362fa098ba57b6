"""Set-up shared by the PyTorch DDP reference scripts (torch_ddp_reference.py,
torch_gpt_reference.py): the common command-line options, one process per rank over gloo
on CPU with `cores / ranks` intra-op threads, and the final JSON line that
`petaring bench train` reads.

Needs Debian's python3-torch (run with /usr/bin/python3). Not a dependency of petaring.
"""
import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def add_common_args(parser):
    """--np, --seed and --threads, as both references take them."""
    parser.add_argument("--np", type=int, default=1, help="ranks (processes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads per rank; 0 = cores / ranks")


def init_rank(rank, args, port):
    """Joins the gloo process group as `rank` of args.np; returns the intra-op threads."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.np)
    torch.set_num_threads(threads)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=args.np)
    torch.manual_seed(args.seed)
    return threads


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_and_report(run, args):
    """Runs run(rank, args, port, results) in args.np processes; prints what rank 0 put
    into `results` (the final metrics record) as one JSON line."""
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(run, args=(args, free_port(), results), nprocs=args.np, join=True)
    print(json.dumps(results.get()))
