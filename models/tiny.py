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
from transformers.utils import logging as hf_logging

from models.pretrained import minilm_folder

# transformers draws a bar per saved checkpoint: noise on stderr beside a demo run's own bars.
hf_logging.disable_progress_bar()

TINY_WAV2VEC2 = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                     num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
# The --demo T->A student: small and random, yet it learns emotion from 120 sentences in under a minute.
# - "layer" norm in the frozen conv encoder: wav2vec2-base's GroupNorm normalises each first-layer
#   channel over the whole padded input, so a clip's features change by ~60 % with the batch it is
#   padded in, and each channel's level (the long-term spectrum) is erased.
# - 128 conv channels, 64-sample first kernel, hidden 64: a frozen random encoder passes more of the
#   spectrum than TINY's 32 channels of 10 samples (linear probe on the demo data ~0.7 vs ~0.6).
# - 100 frames/s (strides 32·5): half TINY's frames, so about half the transformer's cost.
DEMO_WAV2VEC2_STUDENT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                             conv_dim=(128, 128), conv_stride=(32, 5), conv_kernel=(64, 5), feat_extract_norm="layer",
                             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def save_tiny_wav2vec2(folder: str | Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(folder)
    return Path(folder)


def save_demo_wav2vec2_student(folder: str | Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = Wav2Vec2Model(Wav2Vec2Config(**DEMO_WAV2VEC2_STUDENT))
    # Time masking replaces ~30 % of the frames with masked_spec_embed, in training only. HF draws it
    # uniform in [0, 1], far (rms 0.6) from this random model's average frame: between training and
    # evaluation the pooled feature then moves ~9x the spread of the class centres, so evaluation sees
    # features training never did (the tiny student predicted a single class). Zero lies near the
    # average frame (rms 0.2); the shift drops to ~3x and the eval-mode loss stays at the training loss.
    with torch.no_grad():
        model.masked_spec_embed.zero_()
    model.save_pretrained(folder)
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


def demo_wav2vec2_student(demo_dir: Path) -> str:
    """The T->A demo's small random wav2vec2 student, saved once under `demo_dir/models`."""
    return saved_once(demo_dir / "models" / "wav2vec2-t2a-demo-student", save_demo_wav2vec2_student)
