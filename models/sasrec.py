"""SASRec-style causal transformer over a user's recent history.

Differences from the original SASRec (Kang & McAuley, 2018), each for a reason:

* positions are counted from the *right* (0 = most recent), so the score of a
  left-padded history does not depend on how much padding the caller adds —
  the Flink job may pad to the batch's longest history rather than ``max_len``;
* an event-type embedding is added to the item embedding (view/click/cart/
  purchase/rate); types never seen in training are tied to the mean of the
  seen ones at export (see ``tie_unseen_events``), so a stream of "click"
  events behaves like the "rate" events ML-1M was trained on;
* pre-LayerNorm blocks, and training with cross-entropy over sampled or full
  softmax instead of BCE with one negative (see ``models.train``);
* optionally content-aware (``text_dim > 0``): an item is its ID embedding plus a
  learned projection of a frozen language-model embedding of its text
  (``models.item_embeddings``). Training drops whole ID rows at random
  (``id_dropout``) so the text part alone is a usable representation: that is
  what an item outside the vocabulary gets when served. ``folded`` turns the
  sum into one ID table for export, so the served graph costs what an ID-only
  model of the same size costs.

``score`` is the one scoring method and the ONNX graph: no value-dependent
Python branches, every shape is dynamic.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from models.artifact import OOV_INDEX, PAD_INDEX
from models.errors import ModelError

N_EVENTS = 6  # 0 = pad, 1 view, 2 click, 3 cart, 4 purchase, 5 rate (the contract's names)


@dataclass(frozen=True)
class SASRecConfig:
    """Model hyper-parameters (saved in every checkpoint and in config.json).

    n_items:   embedding rows incl. pad (0) and OOV (1); CLI: derived from the vocabulary.
    max_len:   L, history length trained with (default 200; ``--max-len``).
    d_model:   hidden size (default 64; ``--d-model``).
    n_heads:   attention heads (default 2; ``--n-heads``).
    n_layers:  transformer blocks (default 2; ``--n-layers``).
    d_ff:      feed-forward width (default 4 * d_model when 0; ``--d-ff``).
    dropout:   dropout in embeddings, attention and FFN (default 0.2; ``--dropout``).
    n_events:  event-type rows incl. padding: 6 for the contract's names, more when the training data has
               other event names (``models.split.event_vocab``); derived from the vocabulary.
    text_dim:  width of the item text embeddings fused into the item representation; 0 = ID-only
               (``--item-embeddings`` sets it from the embeddings' width).
    id_dropout: probability that an item's ID row is zeroed for one training batch, so the model also
               learns to rank from text alone (content-aware only; ``--id-dropout``, default 0.1).
    """

    n_items: int
    max_len: int = 200
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    d_ff: int = 0
    dropout: float = 0.2
    n_events: int = N_EVENTS
    text_dim: int = 0
    id_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_items < 3:
            raise ModelError(f"n_items must be >= 3 (pad, oov, >= 1 item), got {self.n_items}")
        if self.max_len < 1 or self.d_model < 1 or self.n_layers < 1:
            raise ModelError(f"max_len, d_model and n_layers must be positive: {self}")
        if self.d_model % self.n_heads:
            raise ModelError(f"d_model={self.d_model} not divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.text_dim < 0 or not 0.0 <= self.id_dropout < 1.0:
            raise ModelError(f"text_dim must be >= 0 and id_dropout in [0, 1): {self}")

    @property
    def ff_width(self) -> int:
        return self.d_ff or 4 * self.d_model

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with an explicit boolean mask (written out for ONNX parity)."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        # x: (B, L, D); allowed: (B, 1, L, L) bool, True where query may attend to key
        b, l, d = x.shape
        h = self.n_heads
        q, k, v = self.qkv(x).split(d, dim=-1)
        q = q.view(b, l, h, d // h).transpose(1, 2)  # (B, H, L, Dh)
        k = k.view(b, l, h, d // h).transpose(1, 2)
        v = v.view(b, l, h, d // h).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // h))  # (B, H, L, L)
        att = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        y = self.drop(att) @ v  # (B, H, L, Dh)
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, l, d)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.ff_width), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.ff_width, cfg.d_model), nn.Dropout(cfg.dropout),
        )

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x), allowed)
        return x + self.ff(self.ln2(x))


class SASRec(nn.Module):
    """Causal transformer encoder; item embeddings are shared between input and output."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(cfg.n_items, cfg.d_model, padding_idx=PAD_INDEX)
        self.event_emb = nn.Embedding(cfg.n_events, cfg.d_model, padding_idx=PAD_INDEX)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        if cfg.text_dim:
            self.text_proj = nn.Linear(cfg.text_dim, cfg.d_model)
            # Frozen language-model vectors, row = item index (zeros where an item has no text).
            self.register_buffer("item_text", torch.zeros(cfg.n_items, cfg.text_dim))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[PAD_INDEX].zero_()
            # OOV never appears in training data; a zero vector scores it neutrally (0) as a candidate.
            self.item_emb.weight[OOV_INDEX].zero_()
            self.event_emb.weight[PAD_INDEX].zero_()

    @torch.no_grad()
    def set_item_text(self, matrix: Tensor) -> None:
        """Load the (n_items, text_dim) text embeddings (rows of pad and OOV are forced to zero)."""
        if not self.cfg.text_dim or tuple(matrix.shape) != tuple(self.item_text.shape):
            raise ModelError(f"item text {tuple(matrix.shape)} does not fit text_dim={self.cfg.text_dim}, "
                             f"n_items={self.cfg.n_items}")
        self.item_text.copy_(matrix)
        self.item_text[PAD_INDEX].zero_()
        self.item_text[OOV_INDEX].zero_()

    def item_table(self) -> Tensor:
        """(n_items, D) item representations: ID row, plus the projected text when content-aware.

        In training mode whole ID rows are dropped with probability ``id_dropout`` (one draw per
        call: call it once per batch and pass the table on).
        """
        table = self.item_emb.weight
        if not self.cfg.text_dim:
            return table
        if self.training and self.cfg.id_dropout > 0:
            keep = torch.rand(table.shape[0], 1, device=table.device) >= self.cfg.id_dropout
            table = table * keep
        table = table + self.text_proj(self.item_text)
        return table.index_fill(0, torch.tensor([PAD_INDEX], device=table.device), 0.0)

    def encode(self, hist_items: Tensor, hist_events: Tensor, table: Tensor | None = None) -> Tensor:
        """Hidden state at every position.

        hist_items, hist_events: (B, L) int64, left-padded; table: ``item_table()`` when the caller
        already has it. Returns (B, L, D).
        Positions beyond ``max_len`` from the right are clamped to the oldest
        learned position, so longer inputs do not crash (the job should send
        at most ``max_len``).
        """
        b, l = hist_items.shape
        valid = hist_items != PAD_INDEX  # (B, L)
        # Right-aligned positions: 0 = most recent. Independent of the padding amount.
        pos = (l - 1 - torch.arange(l, device=hist_items.device)).clamp(max=self.cfg.max_len - 1)  # (L,)
        table = self.item_table() if table is None else table
        x = table[hist_items] * math.sqrt(self.cfg.d_model) + self.event_emb(hist_events)
        x = self.drop(x + self.pos_emb(pos)[None, :, :])  # (B, L, D)
        causal = torch.ones(l, l, dtype=torch.bool, device=x.device).tril()  # (L, L)
        eye = torch.eye(l, dtype=torch.bool, device=x.device)
        # Every query may attend to itself, so a padding row never has an all -inf softmax (no NaN);
        # real positions never see padding keys, so their output ignores the padding amount.
        allowed = ((causal[None] & valid[:, None, :]) | eye[None])[:, None]  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln_f(x)

    def score(self, hist_items: Tensor, hist_events: Tensor, candidates: Tensor) -> Tensor:
        """scores (B, C) float32 = <h_last, E[candidate]> for each candidate."""
        return self.score_and_state(hist_items, hist_events, candidates)[0]

    def score_and_state(self, hist_items: Tensor, hist_events: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """(scores (B, C), user_state (B, D)): the state lets a server score items outside the table."""
        table = self.item_table()
        h = self.encode(hist_items, hist_events, table)[:, -1, :]  # (B, D) state after the most recent item
        cand = table[candidates]  # (B, C, D)
        return (cand @ h.unsqueeze(-1)).squeeze(-1), h  # (B, C), (B, D)

    def forward(self, hist_items: Tensor, hist_events: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
        return self.score_and_state(hist_items, hist_events, candidates)

    @torch.no_grad()
    def folded(self) -> "SASRec":
        """An ID-only copy whose item table is this model's full table (ID + projected text), in eval mode.

        Same scores for every known item, and the graph of an ID-only model: serving pays nothing
        for the text part. Items outside the table are scored with ``text_projection``.
        """
        was_training = self.training
        self.eval()
        cfg = SASRecConfig(**{**self.cfg.to_dict(), "text_dim": 0, "id_dropout": 0.0})
        out = SASRec(cfg)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(("text_proj.", "item_text"))}
        state["item_emb.weight"] = self.item_table().detach().clone()
        out.load_state_dict(state)
        self.train(was_training)
        return out.eval()

    def text_projection(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight (D, text_dim), bias (D,)) float32: item vector = weight @ text + bias for a new item."""
        if not self.cfg.text_dim:
            raise ModelError("an ID-only model has no text projection")
        return (self.text_proj.weight.detach().numpy().astype("float32").copy(),
                self.text_proj.bias.detach().numpy().astype("float32").copy())

    @torch.no_grad()
    def tie_unseen_events(self, seen: Tensor) -> None:
        """Set embeddings of event types absent from training to the mean of the seen ones.

        seen: (n_events,) bool. Untrained rows would otherwise be random noise at serving time.
        """
        seen = seen.clone()
        seen[PAD_INDEX] = False
        if seen.any():
            mean = self.event_emb.weight[seen].mean(dim=0)
            for e in range(1, self.cfg.n_events):
                if not bool(seen[e]):
                    self.event_emb.weight[e] = mean
