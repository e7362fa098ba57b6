#!/usr/bin/python3
"""PyTorch DDP reference for petaring's character-level GPT recipe.

The same model (token + position embedding, pre-LN blocks of causal self-attention and a
tanh-GELU MLP, final LayerNorm, head tied to the token embedding or not), the same byte
tokens of the same text file, the same AdamW with warmup, cosine decay and clipping, the
same batch and number of ranks as examples/recipes/gpt_char.yaml, written the way a
PyTorch 1.13 user would (nanoGPT style: nn.Module blocks, random windows of the text each
step, DistributedDataParallel over gloo on CPU). PyTorch 1.13 has no fused attention
(scaled_dot_product_attention came in 2.0), so attention is the masked-softmax form.

Prints one JSON object with the keys of petaring's final metrics record (tokens_per_s,
loss, steps) so that `petaring bench train` can compare the two side by side.
Needs Debian's python3-torch (run with /usr/bin/python3). Not a dependency of petaring.
"""
import argparse
import math
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from torch_ddp_common import add_common_args, init_rank, spawn_and_report


class Block(nn.Module):
    def __init__(self, dim, heads, context):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.fc_proj = nn.Linear(4 * dim, dim)
        self.register_buffer("mask", torch.tril(torch.ones(context, context)))  # as nanoGPT

    def attention(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q = q.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:t, :t] == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.proj(y)

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.wte = nn.Embedding(a.vocab, a.dim)
        self.wpe = nn.Embedding(a.context, a.dim)
        self.blocks = nn.ModuleList([Block(a.dim, a.heads, a.context) for _ in range(a.layers)])
        self.ln_f = nn.LayerNorm(a.dim)
        self.head = nn.Linear(a.dim, a.vocab, bias=False)
        if a.tie:
            self.head.weight = self.wte.weight
        for name, p in self.named_parameters():  # GPT-2's initialization, as petaring's
            if name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * a.layers))
            elif p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        t = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(t))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def lr_at(step, a):
    if step < a.warmup:
        return a.lr * step / a.warmup
    progress = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.min_lr + (a.lr - a.min_lr) * (1 + math.cos(math.pi * progress)) / 2


def run(rank, a, port, results):
    world = a.np
    threads = init_rank(rank, a, port)
    with open(a.data, "rb") as f:
        data = torch.tensor(list(f.read()), dtype=torch.long)
    train = data[: int(len(data) * 0.9)]
    model = DDP(Gpt(a))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(a.beta1, a.beta2),
                            weight_decay=a.weight_decay)
    gen = torch.Generator().manual_seed(a.seed * 1000 + rank)
    dist.barrier()
    start = time.perf_counter()
    loss = torch.tensor(0.0)
    for step in range(a.steps):
        ix = torch.randint(len(train) - a.context - 1, (a.batch,), generator=gen)
        x = torch.stack([train[i:i + a.context] for i in ix])
        y = torch.stack([train[i + 1:i + 1 + a.context] for i in ix])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, a)
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
    dist.barrier()
    seconds = time.perf_counter() - start
    final_loss = loss.detach().clone()
    dist.all_reduce(final_loss)
    if rank == 0:
        results.put({
            "event": "final", "reference": "pytorch-ddp-gloo", "torch": torch.__version__,
            "steps": a.steps, "loss": final_loss.item() / world,
            "tokens_per_s": a.steps * a.batch * a.context * world / seconds,
            "samples_per_s": a.steps * a.batch * world / seconds,
            "world_size": world, "train_seconds": seconds, "threads_per_rank": threads,
            "parameters": sum(p.numel() for p in model.parameters()),
        })
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--data", default="/usr/share/games/fortunes/computers")
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--tie", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr", dest="min_lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--weight-decay", dest="weight_decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=16, help="sequences per rank")
    p.add_argument("--steps", type=int, default=50)
    a = p.parse_args()
    spawn_and_report(run, a)


if __name__ == "__main__":
    main()
