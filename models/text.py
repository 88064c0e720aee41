"""Text models: the frozen language-model teacher (T→A) and the fine-tuned BERT student (A→T)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import BertModel, RobertaModel

from models.heads import masked_mean
from models.pretrained import FrozenTeacher, load_hf_model, load_tokenizer, named_model

MAX_LENGTH = 128
_MODEL_CLASSES = {"bert": BertModel, "bert-large": BertModel, "roberta": RobertaModel}


class TextTeacher(FrozenTeacher):
    """Frozen BERT / BERT-large / RoBERTa without pooler: a sentence → mean of last_hidden_state over real tokens."""

    def __init__(self, language_model: str = "bert", path: str | None = None) -> None:
        super().__init__()
        named_model(language_model, "text")  # an unknown name is an InputError, not a KeyError below
        # The tokenizer first: a missing one (random RoBERTa offline) should fail before a model is built.
        self.tokenizer = load_tokenizer(language_model, path, "teacher")
        model, self.source, identity = load_hf_model(
            _MODEL_CLASSES[language_model], language_model, path, "teacher", model_kwargs={"add_pooling_layer": False}
        )
        self.model = model
        self.dim = model.config.hidden_size
        self.identity = f"{identity}|max_length={MAX_LENGTH},mean-tokens"
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

    def __init__(self, dim: int, num_classes: int, path: str | None = None) -> None:
        super().__init__()
        self.tokenizer = load_tokenizer("bert", path, "student")
        model, self.source, _ = load_hf_model(
            BertModel, "bert", path, "student", model_kwargs={"add_pooling_layer": False}
        )
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
