#!/usr/bin/python3
"""Writes tests/fixtures/gpt_golden.json: loss and every gradient of a tiny GPT computed
by PyTorch (Debian's python3-torch, 1.13), independently of petaring's kernels.

For each case: a config, fixed f32 weights in petaring's parameter layout (trainer/gpt.h),
tokens and targets; PyTorch computes the loss and the gradients in float64 from those
exact f32 weights. tests/trainer/gpt_golden_test.cc loads the file and compares.

Run from the repository root:  /usr/bin/python3 scripts/gen_gpt_golden.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F


def layout(cfg):
    """(name, shape) in petaring's order (trainer/gpt.h)."""
    v, p, c = cfg["vocab"], cfg["context"], cfg["dim"]
    out = [("wte", (v, c)), ("wpe", (p, c))]
    for l in range(cfg["layers"]):
        h = f"h.{l}."
        out += [(h + "ln_1.w", (c,)), (h + "ln_1.b", (c,)),
                (h + "qkv.w", (3 * c, c)), (h + "qkv.b", (3 * c,)),
                (h + "proj.w", (c, c)), (h + "proj.b", (c,)),
                (h + "ln_2.w", (c,)), (h + "ln_2.b", (c,)),
                (h + "fc.w", (4 * c, c)), (h + "fc.b", (4 * c,)),
                (h + "fc_proj.w", (c, 4 * c)), (h + "fc_proj.b", (c,))]
    out += [("ln_f.w", (c,)), ("ln_f.b", (c,))]
    if not cfg["tie_embeddings"]:
        out.append(("head", (v, c)))
    return out


def make_params(cfg, gen):
    """Weights large enough that every gradient is well away from zero, rounded to f32."""
    params = {}
    for name, shape in layout(cfg):
        if name.endswith("ln_1.w") or name.endswith("ln_2.w") or name == "ln_f.w":
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif name.endswith(".b"):
            t = 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            t = 0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)
        params[name] = t.float().double().requires_grad_(True)
    return params


def forward(cfg, p, tokens, targets):
    b, t = tokens.shape
    c, nh = cfg["dim"], cfg["heads"]
    hs = c // nh
    x = p["wte"][tokens] + p["wpe"][:t]
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for l in range(cfg["layers"]):
        h = f"h.{l}."
        y = F.layer_norm(x, (c,), p[h + "ln_1.w"], p[h + "ln_1.b"], eps=1e-5)
        qkv = F.linear(y, p[h + "qkv.w"], p[h + "qkv.b"])
        q, k, v = qkv.split(c, dim=2)
        q = q.view(b, t, nh, hs).transpose(1, 2)
        k = k.view(b, t, nh, hs).transpose(1, 2)
        v = v.view(b, t, nh, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + F.linear(y, p[h + "proj.w"], p[h + "proj.b"])
        y = F.layer_norm(x, (c,), p[h + "ln_2.w"], p[h + "ln_2.b"], eps=1e-5)
        y = F.gelu(F.linear(y, p[h + "fc.w"], p[h + "fc.b"]), approximate="tanh")
        x = x + F.linear(y, p[h + "fc_proj.w"], p[h + "fc_proj.b"])
    x = F.layer_norm(x, (c,), p["ln_f.w"], p["ln_f.b"], eps=1e-5)
    head = p["wte"] if cfg["tie_embeddings"] else p["head"]
    logits = x @ head.t()
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def make_case(name, cfg, batch, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    params = make_params(cfg, gen)
    tokens = torch.randint(0, cfg["vocab"], (batch, steps), generator=gen)
    targets = torch.randint(0, cfg["vocab"], (batch, steps), generator=gen)
    loss = forward(cfg, params, tokens, targets)
    loss.backward()
    names = [n for n, _ in layout(cfg)]
    # 9 significant digits give back the exact f32 weights; 10 keep the f64 gradients far
    # inside the 1e-4 tolerance, in a smaller file.
    def flat(tensors, digits):
        return [float(f"{x:.{digits}g}") for n in names
                for x in tensors[n].detach().reshape(-1).tolist()]
    return {
        "name": name, "config": cfg, "batch": batch, "steps": steps,
        "tokens": tokens.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
        "params": flat(params, 9), "loss": float(loss),
        "grads": flat({n: params[n].grad for n in names}, 10),
        "names": [[n, list(s)] for n, s in layout(cfg)],
    }


def main():
    torch.manual_seed(0)
    base = {"vocab": 11, "context": 7, "layers": 2, "heads": 2, "dim": 8}
    cases = [
        # T < context: rows of wpe past T get zero gradient.
        make_case("tied", dict(base, tie_embeddings=True), batch=2, steps=5, seed=1),
        make_case("untied", dict(base, tie_embeddings=False), batch=3, steps=7, seed=2),
    ]
    out = {"generator": "scripts/gen_gpt_golden.py", "torch": torch.__version__,
           "dtype": "float64 from f32 weights", "cases": cases}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "fixtures", "gpt_golden.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: " + ", ".join(f"{c['name']} loss {c['loss']:.6f}" for c in cases))


if __name__ == "__main__":
    main()
