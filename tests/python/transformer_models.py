"""Small transformers for the reference tests and the benchmark (float64, eval mode).

GPT: a hand-written causal GPT (token + learned positional embeddings, pre-LN blocks of 2-head
causal self-attention with a masked_fill(-inf) mask and a GELU MLP, final LayerNorm, logits
through the TIED token embedding). Encoder: nn.TransformerEncoderLayer over a token embedding.
Both take int64 tokens [n, T] and return [n, T, C].
"""
import math
import warnings

import torch
from torch import nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, width, heads, T, mask="where"):
        super().__init__()
        self.heads, self.mask = heads, mask
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.register_buffer("tril", torch.tril(torch.ones(T, T)).view(1, 1, T, T))

    def forward(self, x):
        n, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        h = self.heads
        q = q.view(n, T, h, C // h).transpose(1, 2)
        k = k.view(n, T, h, C // h).transpose(1, 2)
        v = v.view(n, T, h, C // h).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // h))
        if self.mask == "where":
            att = att.masked_fill(self.tril[:, :, :T, :T] == 0, float("-inf"))
        else:  # additive
            att = att + (1.0 - self.tril[:, :, :T, :T]) * -1e9
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(n, T, C)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, width, heads, T, gelu="none", mask="where"):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, T, mask)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.out = nn.Linear(4 * width, width)
        self.gelu = gelu

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate=self.gelu))


class GPT(nn.Module):
    def __init__(self, vocab=11, T=6, width=8, heads=2, layers=2, gelu="none", mask="where"):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Parameter(torch.randn(T, width) * 0.3)
        self.blocks = nn.ModuleList([Block(width, heads, T, gelu, mask) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)

    def forward(self, tokens):
        x = self.wte(tokens) + self.wpe
        for b in self.blocks:
            x = b(x)
        return self.ln_f(x) @ self.wte.weight.t()  # tied output embedding


class Encoder(nn.Module):
    def __init__(self, vocab=11, width=8, heads=2, classes=5, gelu=False):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=16, dropout=0.0, batch_first=True,
                                                activation="gelu" if gelu else "relu")
        self.head = nn.Linear(width, classes)

    def forward(self, tokens):
        return self.head(self.layer(self.emb(tokens)))


def randomise(model, seed=0):
    """Random weights (LayerNorm affine too), float64, eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    return model.double().eval()


def export(model, path, n, T, opset=17):
    tokens = torch.zeros(n, T, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (tokens,), str(path), opset_version=opset, input_names=["tokens"],
                          output_names=["logits"], dynamic_axes={"tokens": {0: "n"}, "logits": {0: "n"}},
                          do_constant_folding=False)
