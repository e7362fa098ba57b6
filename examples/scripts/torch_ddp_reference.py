#!/usr/bin/env python3
"""PyTorch DDP reference for petaring's Fashion-MNIST MLP recipe.

The same model, data, optimizer, batch and number of ranks as
examples/recipes/fashion_mlp.yaml, written the way a PyTorch user would: TensorDataset +
DistributedSampler + DataLoader, nn.Sequential, DistributedDataParallel over gloo on CPU.
It prints one JSON object with the keys petaring's final metrics record uses, so that
`petaring bench train` can compare the two side by side.

Needs Debian's python3-torch (run with /usr/bin/python3). Not a dependency of petaring.
"""
import argparse
import gzip
import os
import struct
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from torch_ddp_common import add_common_args, init_rank, spawn_and_report


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_split(folder, prefix, mean, std):
    images = read_idx(os.path.join(folder, prefix + "-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(folder, prefix + "-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    x = (x - mean) / std
    return x, torch.from_numpy(labels.astype(np.int64))


def build_model(layers, init):
    modules = []
    for i in range(len(layers) - 1):
        linear = nn.Linear(layers[i], layers[i + 1])
        if init == "kaiming_normal":
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            nn.init.zeros_(linear.bias)
        modules.append(linear)
        if i + 2 < len(layers):
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def run(rank, args, port, results):
    world = args.np
    threads = init_rank(rank, args, port)

    mean, std = 0.0, 1.0
    if args.normalize:
        train_x, _ = load_split(args.data, "train", 0.0, 1.0)
        mean, std = train_x.mean().item(), train_x.std(unbiased=False).item()
    train_x, train_y = load_split(args.data, "train", mean, std)
    test_x, test_y = load_split(args.data, "t10k", mean, std)
    sampler = DistributedSampler(TensorDataset(train_x, train_y), num_replicas=world, rank=rank,
                                 shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=args.batch, sampler=sampler,
                        drop_last=True)
    model = DDP(build_model(args.layers, args.init))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    loss_fn = nn.CrossEntropyLoss()

    steps = 0
    train_seconds = 0.0
    loss = torch.tensor(0.0)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        dist.barrier()
        start = time.perf_counter()
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            steps += 1
        dist.barrier()
        train_seconds += time.perf_counter() - start

    with torch.no_grad():
        shard = slice(len(test_x) * rank // world, len(test_x) * (rank + 1) // world)
        correct = (model(test_x[shard]).argmax(dim=1) == test_y[shard]).sum().float()
        dist.all_reduce(correct)
        final_loss = loss.detach().clone()
        dist.all_reduce(final_loss)
    if rank == 0:
        results.put({
            "event": "final", "reference": "pytorch-ddp-gloo", "torch": torch.__version__,
            "steps": steps, "loss": final_loss.item() / world,
            "samples_per_s": steps * args.batch * world / train_seconds,
            "test_accuracy": correct.item() / len(test_x), "world_size": world,
            "train_seconds": train_seconds, "threads_per_rank": threads,
        })
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--layers", type=lambda s: [int(v) for v in s.split(",")], default=[784, 256, 256, 10])
    p.add_argument("--init", default="kaiming_uniform", choices=["kaiming_uniform", "kaiming_normal"])
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch", type=int, default=64, help="per rank")
    p.add_argument("--epochs", type=int, default=1)
    args = p.parse_args()
    spawn_and_report(run, args)


if __name__ == "__main__":
    main()
