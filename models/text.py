"""Text models: the frozen language-model teacher (T→A) and the fine-tuned BERT student (A→T)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

from models.frozen_teacher import FrozenTeacher
from models.heads import masked_mean
from models.pretrained import (
    NamedModel,
    load_hf_model,
    load_tokenizer,
    lookup,
    trade_compute_for_memory,
)

MAX_LENGTH = 128
_MODEL_CLASSES = {"bert": BertModel, "bert-large": BertModel, "roberta": RobertaModel}


def _roberta_base_config() -> RobertaConfig:
    # RobertaConfig() inherits BERT's vocabulary and positions; roberta-base differs in these.
    return RobertaConfig(
        vocab_size=50265,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )


def _bert_large_config() -> BertConfig:
    return BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)


LANGUAGE_MODELS = {
    # BertConfig() defaults are bert-base-uncased's architecture.
    "bert": NamedModel("text", "bert", "bert-base-uncased", 768, BertConfig),
    "bert-large": NamedModel("text", "bert-large", "bert-large-uncased", 1024, _bert_large_config),
    "roberta": NamedModel("text", "roberta", "roberta-base", 768, _roberta_base_config),
}


class TextTeacher(FrozenTeacher):
    """Frozen BERT / BERT-large / RoBERTa without pooler: a sentence → mean of last_hidden_state over real tokens."""

    preprocessing = f"max_length={MAX_LENGTH},mean-tokens"
    # The attention mask keeps a sentence's feature off its batch-mates' padding. Blocks of 32, not more: a
    # block is padded to its longest sentence.
    cache_block = 32

    def __init__(self, language_model: str = "bert", path: str | None = None, seed: int | None = None) -> None:
        super().__init__()
        entry = lookup(LANGUAGE_MODELS, language_model)
        # The tokenizer first: a missing one (random RoBERTa offline) should fail before a model is built.
        self.tokenizer = load_tokenizer(entry, path, "teacher")
        model, self.source = load_hf_model(
            _MODEL_CLASSES[language_model], entry, path, "teacher", model_kwargs={"add_pooling_layer": False}, seed=seed
        )
        self.model = model
        self.dim = model.config.hidden_size
        self.freeze()

    def encode(self, inputs: list[str]) -> Tensor:
        """Features (B×D, float32) of sentences, padding masked out of the mean."""
        tokens = self.tokenizer(
            list(inputs), padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            hidden = self.model(**tokens).last_hidden_state
        return masked_mean(hidden, tokens["attention_mask"]).float()


class BertTextStudent(nn.Module):
    """A→T student: BertModel (bert-base-uncased, ``--student_path`` or random), fully fine-tuned.

    ``feature = LayerNorm(Linear(CLS, D))``, head ``Linear(D, C)``.
    """

    min_batch = 1
    skips_layers = False

    def __init__(self, dim: int, num_classes: int, path: str | None = None,
                 gradient_checkpointing: bool = False) -> None:
        super().__init__()
        self.tokenizer = load_tokenizer(LANGUAGE_MODELS["bert"], path, "student")
        model, self.source = load_hf_model(
            BertModel, LANGUAGE_MODELS["bert"], path, "student", model_kwargs={"add_pooling_layer": False}
        )
        if gradient_checkpointing:
            trade_compute_for_memory(model)
        self.bert = model
        self.feature = nn.Sequential(nn.Linear(model.config.hidden_size, dim), nn.LayerNorm(dim))
        self.head = nn.Linear(dim, num_classes)

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """Padded, truncated (max_length 128) input_ids, attention_mask and token_type_ids (CPU tensors)."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        return {key: tokens[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in tokens}

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(logits B×C, feature B×D) from the [CLS] token's last hidden state."""
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        feature = self.feature(hidden[:, 0])
        return self.head(feature), feature
