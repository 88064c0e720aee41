"""Wav2Vec2 models: the frozen audio teacher (A→V, A→T) and the fine-tuned audio student (T→A)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch import Tensor, nn
from transformers import Wav2Vec2Config, Wav2Vec2Model
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from models.frozen_teacher import FrozenTeacher
from models.heads import IemocapAudioHead, masked_mean
from models.pretrained import (
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

    The forward is transformers' Wav2Vec2Model.forward (feature encoder, projection, SpecAugment time masks, the
    encoder with LayerDrop) in the same operations and random draws, so the same numbers, written so that a step reads
    nothing back from the device and `torch.compile` captures it without data-dependent shapes: the time masks are
    drawn on the host from the collate's lengths and written as indices made there, padded frames are zeroed by
    selection, and each LayerDrop draw is made on the host, outside the compiled graph.
    """

    min_batch = 1

    def __init__(self, dim: int, num_classes: int, path: str | None = None,
                 gradient_checkpointing: bool = False) -> None:
        super().__init__()
        model, self.source = load_hf_model(
            Wav2Vec2Model, WAV2VEC2_MODELS["base"], path, "student",
            config_overrides={"mask_time_prob": 0.3, "apply_spec_augment": True},
        )
        if model.config.mask_feature_prob > 0 or model.config.add_adapter:
            raise InputError(f"--student_path {path}: the wav2vec2 student's config has "
                             f"mask_feature_prob {model.config.mask_feature_prob} and add_adapter "
                             f"{model.config.add_adapter}; expected 0 and false (time masking only, no adapter)")
        model.freeze_feature_encoder()
        if gradient_checkpointing:
            trade_compute_for_memory(model)
        self.wav2vec2 = model
        self.min_input_samples = min_samples_for_time_masking(model.config)
        self.min_frame_samples = min_samples_for_frames(model.config, 1)
        # LayerDrop (wav2vec2-base: 0.1): a training step may leave out whole layers, and so their parameters;
        # several processes need DDP's unused-parameter search for that (utils/trial.py).
        self.skips_layers = model.config.layerdrop > 0
        self.feature = nn.Linear(model.config.hidden_size, dim)
        self.head = IemocapAudioHead(dim, num_classes)

    def forward(self, input_values: Tensor, attention_mask: Tensor,
                sample_lengths: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
        """(logits B×C, feature B×D) of right-padded normalised waveforms B×T with their 0/1 mask B×T.

        In train mode the padded length must be at least ``min_input_samples`` (time masking raises below it);
        every utterance needs ``min_frame_samples`` (one frame; the collate checks). ``sample_lengths`` are each
        utterance's samples on the host (the collate's); without them, training reads them back from the device.
        """
        model, config = self.wav2vec2, self.wav2vec2.config
        if self.training:
            # Noise only on real samples, so the padding the collate added stays exactly zero.
            noise = torch.randn_like(input_values) * 1e-3
            input_values = input_values + noise * attention_mask.to(input_values.dtype)
        # HF advises against attention_mask for group-norm models (base-960h was trained without one):
        # the conv encoder ignores it anyway; it keeps attention and time masking off the padded frames.
        hidden, _ = model.feature_projection(model.feature_extractor(input_values).transpose(1, 2))
        frames = model._get_feat_extract_output_lengths(attention_mask.sum(dim=-1).long())
        # The same frame mask as HF's _get_feature_vector_attention_mask, from the lengths already at hand.
        frame_mask = torch.arange(hidden.shape[1], device=hidden.device) < frames.unsqueeze(1)
        if self.training and config.mask_time_prob > 0:
            if sample_lengths is None:
                sample_lengths = attention_mask.sum(dim=-1).cpu().numpy()
            # Written where HF writes `hidden[mask] = masked_spec_embed` (the same kernel and gradient), by the
            # indices the boolean mask stands for.
            rows, columns = (index.to(hidden.device, non_blocking=True)
                             for index in self.time_masked_frames(sample_lengths, input_values.shape[1]))
            hidden = hidden.index_put((rows, columns), model.masked_spec_embed.to(hidden.dtype))
        hidden = self.encode(hidden, frame_mask)
        feature = self.feature(masked_mean(hidden, frame_mask))
        return self.head(feature), feature

    def encode(self, hidden: Tensor, frame_mask: Tensor) -> Tensor:
        """transformers' Wav2Vec2Encoder (or Wav2Vec2EncoderStableLayerNorm) on the projected, masked frames."""
        encoder, config = self.wav2vec2.encoder, self.wav2vec2.config
        hidden = torch.where(frame_mask.unsqueeze(-1), hidden, 0.0)  # padded frames are zero
        attention_mask = create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=frame_mask)
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not config.do_stable_layer_norm:
            hidden = encoder.layer_norm(hidden)
        hidden = encoder.dropout(hidden)
        for layer in encoder.layers:
            if not (self.training and config.layerdrop > 0 and self.layer_dropped()):
                hidden = layer(hidden, attention_mask=attention_mask)
        return encoder.layer_norm(hidden) if config.do_stable_layer_norm else hidden

    @torch.compiler.disable  # a draw on the host: compiled code keeps it out of its graph
    def layer_dropped(self) -> bool:
        """LayerDrop: whether the next encoder layer is left out, drawn as HF draws it (torch's global generator)."""
        return bool(torch.rand([]) < self.wav2vec2.config.layerdrop)

    @torch.compiler.disable  # NumPy draws on the host: compiled code keeps them out of its graph
    def time_masked_frames(self, sample_lengths: np.ndarray, padded_samples: int) -> tuple[Tensor, Tensor]:
        """SpecAugment's time masks as (batch rows, frame columns) of the masked frames, on the host: drawn as
        transformers' forward draws them (its own function, NumPy's global generator, the frame lengths of the
        utterances), but from lengths the host knows: the forward would read them back from the device."""
        config = self.wav2vec2.config
        lengths = frames_of(config, np.asarray(sample_lengths))
        frames = int(frames_of(config, np.array([padded_samples]))[0])
        frame_mask = torch.from_numpy(np.arange(frames) < lengths[:, None])
        masks = _compute_mask_indices((len(lengths), frames), mask_prob=config.mask_time_prob,
                                      mask_length=config.mask_time_length, attention_mask=frame_mask,
                                      min_masks=config.mask_time_min_masks)
        indices = (torch.from_numpy(index) for index in np.nonzero(masks))
        return tuple(index.pin_memory() if torch.cuda.is_available() else index for index in indices)
