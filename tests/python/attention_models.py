"""torch's own attention modules, as users put them in models (float64, eval mode), for the
reference tests of nn.MultiheadAttention / nn.TransformerEncoderLayer as torch.onnx.export writes
them (the batch axis moved to axis 1 and merged with the heads inside the export).

MHA: tokens [n, T] → embedding + learned positions → nn.MultiheadAttention (a causal attn_mask
buffer, float −inf or bool) → Linear head: [n, T, C]. Encoder: float inputs [n, T, D] →
nn.TransformerEncoderLayer (d_model 8, nhead 2, dim_feedforward 16, dropout 0.1 — gone in eval;
norm_first either; an optional causal src_mask buffer) → Linear head. batch_first=False modules get
their [T, n, D] by transposing in forward(), as a model taking batch-first data does. ViT: conv
patch embedding, class token expanded to the batch and concatenated, learned positional
embedding, one TransformerEncoderLayer, head on the class token.
"""
import warnings

import torch
from torch import nn

from transformer_models import randomise  # random weights, float64, eval mode

__all__ = ["MHA", "Encoder", "Variant", "ViT", "TokenMerge", "causal_mask", "randomise", "export"]


def causal_mask(T, kind):
    if kind == "float":
        return torch.triu(torch.full((T, T), float("-inf"), dtype=torch.float64), 1)
    if kind == "bool":
        return torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    return None


class MHA(nn.Module):
    def __init__(self, batch_first=True, mask="float", vocab=11, T=5, D=8, heads=2, C=5):
        super().__init__()
        self.batch_first = batch_first
        self.emb = nn.Embedding(vocab, D)
        self.pos = nn.Parameter(torch.randn(T, D))
        self.att = nn.MultiheadAttention(D, heads, batch_first=batch_first)
        self.head = nn.Linear(D, C)
        self.register_buffer("causal", causal_mask(T, mask))

    def forward(self, tokens):
        x = self.emb(tokens) + self.pos
        if not self.batch_first:
            x = x.transpose(0, 1)
        y, _ = self.att(x, x, x, attn_mask=self.causal, need_weights=False)
        if not self.batch_first:
            y = y.transpose(0, 1)
        return self.head(y)


class Encoder(nn.Module):
    def __init__(self, batch_first=True, norm_first=False, mask=None, T=5, D=8, C=5):
        super().__init__()
        self.batch_first = batch_first
        self.layer = nn.TransformerEncoderLayer(D, 2, dim_feedforward=16, dropout=0.1, batch_first=batch_first,
                                                norm_first=norm_first)
        self.head = nn.Linear(D, C)
        self.register_buffer("causal", causal_mask(T, mask))

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)
        y = self.layer(x, src_mask=self.causal)
        if not self.batch_first:
            y = y.transpose(0, 1)
        return self.head(y)


class Variant(nn.Module):
    """Other ways torch's attention modules are put together, on float inputs [n, T, D]:
    stack (nn.TransformerEncoder of 2 layers), decoder (nn.TransformerDecoderLayer attending to an
    encoder layer's output: cross-attention), kdim (MultiheadAttention with kdim/vdim given: separate
    q/k/v projections, no biases), bias_kv (add_bias_kv: a learned key/value repeated to the batch),
    transformer (nn.Transformer, one layer each side, causal tgt_mask)."""

    def __init__(self, kind, T=5, D=8, C=3):
        super().__init__()
        self.kind = kind
        if kind == "stack":
            self.body = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, 2, 16, dropout=0.1, batch_first=True), 2)
        elif kind == "decoder":
            self.enc = nn.TransformerEncoderLayer(D, 2, 16, dropout=0.0, batch_first=True)
            self.body = nn.TransformerDecoderLayer(D, 2, 16, dropout=0.0, batch_first=True)
        elif kind in ("kdim", "bias_kv"):
            kw = {"kdim": D, "vdim": D, "bias": False} if kind == "kdim" else {"add_bias_kv": True}
            self.body = nn.MultiheadAttention(D, 2, batch_first=True, **kw)
        else:
            self.body = nn.Transformer(D, 2, 1, 1, 16, dropout=0.0, batch_first=True)
        self.register_buffer("causal", causal_mask(T, "float"))
        self.head = nn.Linear(D, C)

    def forward(self, x):
        if self.kind == "stack":
            y = self.body(x, mask=self.causal)
        elif self.kind == "decoder":
            y = self.body(x, self.enc(x), tgt_mask=self.causal)
        elif self.kind in ("kdim", "bias_kv"):
            y = self.body(x, x, x, attn_mask=self.causal)[0]
        else:
            y = self.body(x, x, tgt_mask=self.causal)
        return self.head(y)


class ViT(nn.Module):
    def __init__(self, C=3, H=4, P=2, D=8, classes=5, flatten="reshape"):
        super().__init__()
        self.flatten = flatten
        self.patch = nn.Conv2d(C, D, P, stride=P)
        self.cls = nn.Parameter(torch.randn(1, 1, D))
        self.pos = nn.Parameter(torch.randn(1, (H // P) ** 2 + 1, D))
        self.enc = nn.TransformerEncoderLayer(D, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(D, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)  # [n, P, D]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.enc(x)[:, 0])


class TokenMerge(nn.Module):
    """flatten(0, 1) of [n, T, D] (ONNX Flatten(axis=2): the batch merged with the positions), a
    Linear on the rows, and back: Flatten with axis ≥ 2 on a batched value."""

    def __init__(self, vocab=11, D=6, C=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, D)
        self.fc = nn.Linear(D, C)

    def forward(self, tokens):
        n, T = tokens.shape
        x = torch.tanh(self.emb(tokens))
        return self.fc(x.flatten(0, 1)).view(n, T, -1)


def export(model, path, example, opset=17):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), opset_version=opset, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                          do_constant_folding=False)
