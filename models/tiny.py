"""Tiny random models saved like downloaded ones: for tests and the demo, loaded through the same
`--teacher_path` / `--student_path` code path as real weights."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torchvision.models import resnet18
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    Wav2Vec2Config,
    Wav2Vec2Model,
)

from models.pretrained import minilm_folder

TINY_WAV2VEC2 = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                     num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def save_tiny_wav2vec2(folder: str | Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(folder)
    return Path(folder)


def save_tiny_bert(folder: str | Path, seed: int = 0) -> Path:
    """A tiny BERT with bert-base-uncased's vocabulary (shipped with the MiniLM package) and tokenizer."""
    tokenizer = BertTokenizer.from_pretrained(minilm_folder())
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(tokenizer), **TINY_BERT)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def save_resnet18_state_dict(path: str | Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.save(resnet18(weights=None).state_dict(), path)
    return Path(path)


def saved_once(folder: Path, save: Callable[[Path], Path]) -> str:
    """`folder`, written by `save` the first time (into a temporary folder, then renamed: never half-written)."""
    if not (folder / "config.json").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        save(tmp)
        tmp.rename(folder)
    return str(folder)


def demo_tiny_wav2vec2(demo_dir: Path) -> str:
    """The demo's tiny random wav2vec2 (a teacher for A->V and A->T), saved once under `demo_dir/models`."""
    return saved_once(demo_dir / "models" / "wav2vec2-tiny", save_tiny_wav2vec2)
