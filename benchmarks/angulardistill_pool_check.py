"""Does AngularDistillHash gain when each anchor is ranked against the whole training set? (validation only)

AngularDistillHash trains on minibatches of kNN groups: each anchor's softmax covers the other items of its
minibatch (7 of its 32 nearest neighbours and ~250 others). This check trains the same linear layer from the
same ITQ start with each anchor against *every* training item (or against its ``pool`` nearest), so the
teacher's mass sits on the anchor's true top neighbours over the whole database, the ranking a rescored
top-100 search needs. It prints the mean validation rescored recall@10 (AG News MiniLM, 256 bits, the
validation splits of ``hashplug bench mihash-unsupervised``: 100 queries per class cut from the seed-0
protocol's database, split i trained with seed i). No test data is touched.

    python benchmarks/angulardistill_pool_check.py '[{}, {"tau_s": 0.02}, {"tau_t": 0.005}, {"epochs": 40},
        {"pool": 500}]' --splits 3 --out benchmarks/results/angulardistill_pool_check.json

Keys of a setting: ``tau_t`` / ``tau_s`` (teacher / student temperature), ``epochs``, ``lr``, ``B`` (anchors
per step), ``gamma``, ``pool`` (None: every item), ``wd``; ``{"preset": true}`` fits AngularDistillHash itself.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from hashplug.bench.ag_news import _eval_codes, _exact_cosine_topk
from hashplug.bench.common import write_json
from hashplug.data import ag_news_protocol, default_data_path, load_ag_news, validation_split
from hashplug.encoders import AngularDistillHash
from hashplug.encoders.angulardistill import angular_agreement
from hashplug.train.mihash import relaxed_codes


def train(Xtr: np.ndarray, seed: int, K: int = 256, tau_t: float = 0.01, tau_s: float | None = None,
          epochs: int = 20, lr: float = 1e-4, B: int = 256, gamma: float = 1.0, pool: int | None = None,
          wd: float = 0.0) -> tuple[AngularDistillHash, list[float]]:
    """AngularDistillHash's ITQ start, then anchors against all (or their ``pool`` nearest) training items.

    Returns the encoder with the trained weights and the mean KL per epoch.
    """
    tau_s = tau_t if tau_s is None else tau_s
    enc = AngularDistillHash(k=K, epochs=0, random_state=seed).fit(Xtr)
    history: list[float] = []
    if epochs == 0:
        return enc, history
    Xt = torch.as_tensor(Xtr)
    Z = (Xt - torch.as_tensor(enc.mean_)) / enc.input_scale_
    W = torch.nn.Parameter(torch.as_tensor(enc.W_).clone())
    b = torch.nn.Parameter(torch.as_tensor(enc.b_).clone())
    with torch.no_grad():
        same = ((Z[:500] @ W + b) > 0).numpy() == (enc.encode(Xtr[:500], layout="pm1") > 0)
    assert same.mean() > 0.999, "the prototype's standardisation differs from the encoder's graph"
    opt = torch.optim.Adam([W, b], lr=lr, weight_decay=wd)
    n = len(Xtr)
    B = min(int(B), n)
    g = torch.Generator().manual_seed(seed)
    T_all = angular_agreement(Xt).float()  # the encoder's teacher, over every pair
    T_all.fill_diagonal_(float("-inf"))
    nn_idx = torch.topk(T_all, pool, dim=1).indices if pool is not None else None
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        total, steps = 0.0, 0
        for i in range(0, n - B + 1, B):
            a = perm[i:i + B]
            phi = relaxed_codes(Z @ W + b, gamma)
            if nn_idx is None:
                s = phi[a] @ phi.T / K
                t = T_all[a]
                mask = torch.zeros_like(s, dtype=torch.bool)
                mask[torch.arange(B), a] = True
                s = s.masked_fill(mask, float("-inf"))
            else:
                idx = nn_idx[a]
                s = (phi[a][:, None, :] * phi[idx]).sum(-1) / K
                t = torch.gather(T_all[a], 1, idx)
            lq = torch.log_softmax(s / tau_s, 1)
            lp = torch.log_softmax(t / tau_t, 1)
            p = lp.exp()
            kl = torch.where(p > 0, p * (lp - lq), torch.zeros_like(p)).sum(1).mean()
            opt.zero_grad()
            kl.backward()
            opt.step()
            total, steps = total + float(kl.detach()), steps + 1
        history.append(total / max(steps, 1))
    enc.W_ = W.detach().numpy().astype(np.float32)
    enc.b_ = b.detach().numpy().astype(np.float32)
    return enc, history


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="?", default="[{}]", help="JSON list of settings (see the module doc)")
    ap.add_argument("--splits", type=int, default=3, help="validation splits (split i trained with seed i)")
    ap.add_argument("--data", default=None, help="AG News embeddings (default: ../shared/data)")
    ap.add_argument("--k", type=int, default=256, help="code length (bits)")
    ap.add_argument("--val-per-class", type=int, default=100, help="validation queries per class")
    ap.add_argument("--out", default=None, help="JSON file to write")
    args = ap.parse_args(argv)
    X, y = load_ag_news(args.data or default_data_path("ag_news"))
    X = np.asarray(X, np.float32)
    sp = ag_news_protocol(X, y, 0)
    vals = []
    for i in range(int(args.splits)):
        v = validation_split(sp.Xdb, sp.ydb, per_class=int(args.val_per_class), seed=i)
        vals.append((v, _exact_cosine_topk(v.Xq, v.Xdb, 10), i))
    rows: list[dict] = []
    for cfg in json.loads(args.settings):
        t0 = time.perf_counter()
        rs, hist = [], []
        for v, true_idx, s in vals:
            if cfg.get("preset"):
                enc, h = AngularDistillHash(k=int(args.k), random_state=s).fit(v.Xdb), []
            else:
                enc, h = train(v.Xdb, s, K=int(args.k), **cfg)
            e = _eval_codes(enc.encode(v.Xq), enc.encode(v.Xdb), v.Xq, v.Xdb, v.yq, v.ydb, true_idx, 10, 10)
            rs.append(float(e["recall10_rescored"]))
            hist.append([round(x, 6) for x in h])
        rows.append({"setting": cfg, "k": int(args.k), "val_recall10_rescored": round(float(np.mean(rs)), 4),
                     "per_split": [round(r, 4) for r in rs], "kl_per_epoch": hist,
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(cfg), "val", rows[-1]["val_recall10_rescored"], rows[-1]["per_split"],
              f"{rows[-1]['seconds']:.0f}s", flush=True)
        write_json({"rows": rows}, args.out)
    return rows


if __name__ == "__main__":
    main()
