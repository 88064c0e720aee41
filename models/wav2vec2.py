"""Wav2Vec2 models: the frozen audio teacher (A→V, A→T) and the fine-tuned audio student (T→A)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch import Tensor, nn
from transformers import Wav2Vec2Config, Wav2Vec2Model
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from models.heads import IemocapAudioHead, masked_mean
from models.pretrained import (
    FrozenTeacher,
    NamedModel,
    load_hf_model,
    lookup,
    trade_compute_for_memory,
)
from utils.experiment import InputError


def _wav2vec2_large_config() -> Wav2Vec2Config:
    # The values of facebook/wav2vec2-large's config.json: the LibriSpeech LARGE model keeps base's
    # group-norm feature encoder without conv bias (only the LV-60 models switched to layer norm).
    return Wav2Vec2Config(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        num_conv_pos_embedding_groups=16,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        conv_bias=False,
    )


WAV2VEC2_MODELS = {
    # Wav2Vec2Config() defaults are facebook/wav2vec2-base-960h's architecture.
    "base": NamedModel("wav2vec2", "wav2vec2-base", "facebook/wav2vec2-base-960h", 768, Wav2Vec2Config),
    "large": NamedModel("wav2vec2", "wav2vec2-large", "facebook/wav2vec2-large", 1024, _wav2vec2_large_config),
}


def normalize_waveform(samples: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per clip, as wav2vec2's feature extractor does."""
    return ((samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)).astype(np.float32)


def min_samples_for_frames(config: Wav2Vec2Config, frames: int) -> int:
    """The fewest input samples from which the conv feature encoder of ``config`` makes ``frames`` frames."""
    samples = max(frames, 1)
    # Invert out = floor((in - kernel) / stride) + 1 layer by layer, from the last conv back to the input.
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
        samples = (samples - 1) * stride + kernel
    return samples


def frames_of(config: Wav2Vec2Config, samples: np.ndarray) -> np.ndarray:
    """The frames the conv feature encoder of ``config`` makes of inputs of ``samples`` samples, on the host."""
    frames = samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        frames = (frames - kernel) // stride + 1
    return frames


def min_samples_for_time_masking(config: Wav2Vec2Config) -> int:
    """The fewest (padded) input samples that give ``config.mask_time_length`` frames.

    Shorter batches make Wav2Vec2's time masking raise in train mode; the collate pads up to this.
    """
    return min_samples_for_frames(config, config.mask_time_length)


class Wav2Vec2Teacher(FrozenTeacher):
    """Frozen Wav2Vec2Model (base-960h or large): a 16 kHz waveform → mean of last_hidden_state over frames.

    Clips are never padded: the group-norm feature encoder of wav2vec2-base normalises over the whole
    input, so a padded clip would get a different feature. Only clips of equal length share a batch.
    """

    preprocessing = "16kHz,per-clip-zmuv,unpadded,mean-frames"
    cache_block = 1  # a clip's feature depends on the batch's padded length (see above)

    def __init__(self, size: str = "base", path: str | None = None, seed: int | None = None) -> None:
        super().__init__()
        model, self.source = load_hf_model(
            Wav2Vec2Model, lookup(WAV2VEC2_MODELS, size), path, "teacher",
            config_overrides={"mask_time_prob": 0.0, "apply_spec_augment": False}, seed=seed,
        )
        self.model = model
        self.dim = model.config.hidden_size
        self.min_samples = min_samples_for_frames(model.config, 1)
        self.freeze()

    def encode(self, inputs: list[np.ndarray | Tensor]) -> Tensor:
        """Features (B×D, float32, in input order) of 1-D 16 kHz waveforms, each normalised per clip."""
        clips = [torch.from_numpy(normalize_waveform(np.asarray(clip, dtype=np.float32))) for clip in inputs]
        if any(clip.dim() != 1 for clip in clips):
            raise InputError("teacher waveforms must be 1-D (mono samples)")
        too_short = [len(clip) for clip in clips if len(clip) < self.min_samples]
        if too_short:
            raise InputError(
                f"a teacher clip has {min(too_short)} samples; wav2vec2 needs at least {self.min_samples} (one frame)"
            )
        by_length: dict[int, list[int]] = defaultdict(list)
        for index, clip in enumerate(clips):
            by_length[len(clip)].append(index)
        features = torch.empty(len(clips), self.dim, device=self.device)
        with torch.no_grad():
            for indices in by_length.values():
                batch = torch.stack([clips[i] for i in indices]).to(self.device)
                features[indices] = self.model(batch).last_hidden_state.mean(dim=1).float()
        return features


class Wav2Vec2AudioStudent(nn.Module):
    """T→A student: Wav2Vec2Model (base-960h, ``--student_path`` or random) fine-tuned with time masking.

    Masked mean over the valid frames → ``feature = Linear(hidden, D)`` → Linear(D,128) → GELU → Linear(128,C).
    """

    def __init__(self, dim: int, num_classes: int, path: str | None = None,
                 gradient_checkpointing: bool = False) -> None:
        super().__init__()
        model, self.source = load_hf_model(
            Wav2Vec2Model, WAV2VEC2_MODELS["base"], path, "student",
            config_overrides={"mask_time_prob": 0.3, "apply_spec_augment": True},
        )
        model.freeze_feature_encoder()
        if gradient_checkpointing:
            trade_compute_for_memory(model)
        self.wav2vec2 = model
        self.min_input_samples = min_samples_for_time_masking(model.config)
        self.min_frame_samples = min_samples_for_frames(model.config, 1)
        self.feature = nn.Linear(model.config.hidden_size, dim)
        self.head = IemocapAudioHead(dim, num_classes)

    def forward(self, input_values: Tensor, attention_mask: Tensor,
                sample_lengths: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
        """(logits B×C, feature B×D) of right-padded normalised waveforms B×T with their 0/1 mask B×T.

        In train mode the padded length must be at least ``min_input_samples`` (time masking raises below it);
        every utterance needs ``min_frame_samples`` (one frame; the collate checks). With ``sample_lengths``
        (each utterance's samples, on the host) the time masks are drawn here, on the host.
        """
        if self.training:
            # Noise only on real samples, so the padding the collate added stays exactly zero.
            noise = torch.randn_like(input_values) * 1e-3
            input_values = input_values + noise * attention_mask.to(input_values.dtype)
        masks = None
        if self.training and sample_lengths is not None and self.wav2vec2.config.mask_time_prob > 0:
            masks = self.time_masks(sample_lengths, input_values.shape[1]).to(input_values.device, non_blocking=True)
        # HF advises against attention_mask for group-norm models (base-960h was trained without one):
        # the conv encoder ignores it anyway; it keeps attention and time masking off the padded frames.
        hidden = self.wav2vec2(input_values, attention_mask=attention_mask, mask_time_indices=masks).last_hidden_state
        frames = self.wav2vec2._get_feat_extract_output_lengths(attention_mask.sum(dim=-1).long())
        # The same frame mask as HF's _get_feature_vector_attention_mask, from the lengths already at hand.
        frame_mask = torch.arange(hidden.shape[1], device=hidden.device) < frames.unsqueeze(1)
        feature = self.feature(masked_mean(hidden, frame_mask))
        return self.head(feature), feature

    def time_masks(self, sample_lengths: np.ndarray, padded_samples: int) -> Tensor:
        """SpecAugment's time masks (B×frames, bool, on the host), drawn as transformers' forward draws them (its
        own function, NumPy's global generator, the frame lengths of the utterances), but from lengths the
        host knows: the forward would read them back from the device."""
        config = self.wav2vec2.config
        lengths = frames_of(config, sample_lengths)
        frames = int(frames_of(config, np.array([padded_samples]))[0])
        frame_mask = torch.from_numpy(np.arange(frames) < lengths[:, None])
        masks = _compute_mask_indices((len(sample_lengths), frames), mask_prob=config.mask_time_prob,
                                      mask_length=config.mask_time_length, attention_mask=frame_mask,
                                      min_masks=config.mask_time_min_masks)
        masks = torch.from_numpy(masks)
        return masks.pin_memory() if torch.cuda.is_available() else masks
