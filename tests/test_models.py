"""Teachers, students and weight loading, on tiny models saved to disk and loaded like real weights."""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from huggingface_hub import try_to_load_from_cache
from torch import nn
from torchvision.models import resnet18, resnet34
from transformers import BertModel, RobertaModel, Wav2Vec2Config, Wav2Vec2Model

from datasets.collate import WaveformCollate
from models.heads import AvmnistHead, masked_mean
from models.pretrained import ModelSource, feature_dim, load_tokenizer, lookup
from models.resnet import (
    RESNETS,
    ImageResNetStudent,
    ResNetTeacher,
    SpectrogramResNetStudent,
)
from models.text import LANGUAGE_MODELS, BertTextStudent, TextTeacher
from models.tiny import TINY_WAV2VEC2
from models.wav2vec2 import (
    WAV2VEC2_MODELS,
    Wav2Vec2AudioStudent,
    Wav2Vec2Teacher,
    min_samples_for_time_masking,
)
from utils.experiment import InputError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and two threads on a busy 2-core machine run 10-100× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_frozen(teacher: nn.Module) -> None:
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    nn.Sequential(teacher).train()  # a parent's train() reaches the teacher too
    assert not any(module.training for module in teacher.modules())


def hub_cached(repo_id: str) -> bool:
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


# --- pretrained.py ------------------------------------------------------------------------------


def test_model_source_as_dict() -> None:
    source = ModelSource("wav2vec2-base", "facebook/wav2vec2-base-960h", False, 768)
    assert source.as_dict() == {
        "name": "wav2vec2-base",
        "source": "facebook/wav2vec2-base-960h",
        "random_init": False,
        "dim": 768,
    }


@pytest.mark.parametrize(
    "name, dim",
    [("resnet18", 512), ("resnet34", 512), ("base", 768), ("large", 1024),
     ("bert", 768), ("bert-large", 1024), ("roberta", 768)],
)
def test_feature_dim_of_named_models(name: str, dim: int) -> None:
    (entry,) = [table[name] for table in (RESNETS, WAV2VEC2_MODELS, LANGUAGE_MODELS) if name in table]
    assert feature_dim(entry, None) == dim
    assert feature_dim(entry, "random") == dim


def test_feature_dim_reads_config_json_without_weights(tmp_path, tiny_models) -> None:
    # A config.json alone is enough: D must not need the weights.
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "hidden_size": 48}))
    assert feature_dim(WAV2VEC2_MODELS["base"], str(tmp_path)) == 48
    assert feature_dim(RESNETS["resnet34"], tiny_models["resnet18"]) == 512


def test_feature_dim_errors(tmp_path, tiny_models) -> None:
    missing = str(tmp_path / "nowhere")
    with pytest.raises(InputError, match=rf"--teacher_path {missing} does not exist"):
        feature_dim(LANGUAGE_MODELS["bert"], missing)
    with pytest.raises(InputError, match="--student_path"):
        feature_dim(LANGUAGE_MODELS["bert"], missing, role="student")
    with pytest.raises(InputError, match="no config.json"):
        feature_dim(LANGUAGE_MODELS["bert"], str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError, match="hidden_size"):
        feature_dim(LANGUAGE_MODELS["bert"], str(tmp_path))
    with pytest.raises(InputError, match="not a folder"):
        feature_dim(LANGUAGE_MODELS["bert"], tiny_models["resnet18"])
    with pytest.raises(InputError, match="not a file"):
        feature_dim(RESNETS["resnet18"], str(tmp_path))
    with pytest.raises(InputError, match="unknown model 'gpt2'; expected one of bert, bert-large, roberta"):
        lookup(LANGUAGE_MODELS, "gpt2")


@pytest.mark.parametrize(
    "name, cls, params",
    # Parameter counts of the published checkpoints' base models (pooler included for BERT/RoBERTa).
    [("bert", BertModel, 109_482_240), ("bert-large", BertModel, 335_141_888), ("roberta", RobertaModel, 124_645_632),
     ("base", Wav2Vec2Model, 94_371_712)],
)
def test_random_configs_are_the_named_architectures(name: str, cls: type, params: int) -> None:
    entry = {**WAV2VEC2_MODELS, **LANGUAGE_MODELS}[name]
    with torch.device("meta"):  # no memory, no init cost
        model = cls(entry.config())
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.config.hidden_size == entry.dim


def test_random_bert_tokenizer_has_the_uncased_vocabulary() -> None:
    tokenizer = load_tokenizer(LANGUAGE_MODELS["bert-large"], "random")
    assert len(tokenizer) == 30522
    ids = tokenizer("Hello world")["input_ids"]
    assert tokenizer.unk_token_id not in ids and len(ids) == 4  # [CLS] hello world [SEP]


@pytest.mark.skipif(hub_cached("roberta-base"), reason="roberta-base is in the local hub cache")
def test_random_roberta_without_tokenizer_is_an_input_error(capsys) -> None:
    with pytest.raises(InputError, match="roberta tokenizer.*--teacher_path"):
        TextTeacher("roberta", "random")
    assert "randomly initialised" not in capsys.readouterr().err  # failed before building the model


@pytest.mark.skipif(hub_cached("facebook/wav2vec2-base-960h"), reason="the model is in the local hub cache")
def test_hub_id_offline_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"facebook/wav2vec2-base-960h.*--teacher_path"):
        Wav2Vec2Teacher("base", None)


def test_bad_model_folders_are_input_errors(tmp_path, tiny_models) -> None:
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(InputError, match=rf"--teacher_path {missing} does not exist"):
        Wav2Vec2Teacher("base", missing)
    with pytest.raises(InputError, match=rf"--student_path {missing} does not exist"):
        BertTextStudent(8, 6, missing)
    with pytest.raises(InputError, match="holds a 'wav2vec2' model; expected a bert folder"):
        TextTeacher("bert", tiny_models["wav2vec2"])
    with pytest.raises(InputError, match="expected one of base, large"):
        Wav2Vec2Teacher("bert", tiny_models["wav2vec2"])
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "hidden_size": 32}))
    with pytest.raises(InputError, match=rf"--teacher_path {tmp_path}: cannot load"):
        Wav2Vec2Teacher("base", str(tmp_path))  # a config without weights


# --- heads.py -----------------------------------------------------------------------------------


def test_masked_mean_ignores_padding() -> None:
    hidden = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    pooled = masked_mean(hidden, mask)
    assert torch.allclose(pooled[0], hidden[0, :3].mean(0))
    assert torch.allclose(pooled[1], hidden[1].mean(0))
    assert torch.allclose(pooled[2], hidden[2, 0])
    changed = hidden.masked_fill(~mask.bool().unsqueeze(-1), 1e6)
    assert torch.equal(masked_mean(changed, mask), pooled)


def test_avmnist_head_layers() -> None:
    head = AvmnistHead(16, 10)
    assert [type(m) for m in head] == [nn.LayerNorm, nn.LeakyReLU, nn.Linear]
    assert head[1].negative_slope == 0.2 and head(torch.randn(2, 16)).shape == (2, 10)


# --- resnet.py ----------------------------------------------------------------------------------


def test_resnet_teacher_from_state_dict(tmp_path, tiny_models) -> None:
    reference = resnet18(weights=None)
    reference.load_state_dict(torch.load(tiny_models["resnet18"], weights_only=True))
    reference.fc = nn.Identity()
    reference.eval()
    images = [torch.rand(1, 28, 28) for _ in range(3)]
    expected = reference(torch.stack(images).repeat(1, 3, 1, 1))

    teacher = ResNetTeacher("resnet18", tiny_models["resnet18"])
    features = teacher.encode(images)
    assert features.shape == (3, 512) and features.dtype == torch.float32 and teacher.dim == 512
    assert torch.allclose(features, expected, atol=1e-5)
    assert_frozen(teacher)
    assert teacher.source.as_dict() == {"name": "resnet18", "source": tiny_models["resnet18"], "random_init": False, "dim": 512}

    # A state_dict without the classifier loads the same.
    no_fc = tmp_path / "no_fc.pth"
    torch.save({k: v for k, v in torch.load(tiny_models["resnet18"], weights_only=True).items() if not k.startswith("fc.")}, no_fc)
    assert torch.allclose(ResNetTeacher("resnet18", str(no_fc)).encode(images), expected, atol=1e-5)


def test_resnet_teacher_rejects_bad_files(tmp_path, tiny_models) -> None:
    with pytest.raises(InputError, match="not a torchvision resnet34 state_dict"):
        ResNetTeacher("resnet34", tiny_models["resnet18"])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=rf"--teacher_path {garbage} is not a readable state_dict"):
        ResNetTeacher("resnet18", str(garbage))
    with pytest.raises(InputError, match="does not exist"):
        ResNetTeacher("resnet18", str(tmp_path / "missing.pth"))
    with pytest.raises(InputError, match="unknown model 'vgg16'"):
        ResNetTeacher("vgg16", "random")


def test_resnet_teacher_identity_follows_the_weights_content_not_their_dates(tmp_path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(resnet34(weights=None).state_dict(), path)
    first = ResNetTeacher("resnet34", str(path)).identity
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # touched, same bytes
    assert ResNetTeacher("resnet34", str(path)).identity == first
    stat = path.stat()
    torch.save(resnet34(weights=None).state_dict(), path)  # other weights, same size and date (as `cp -p`)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and ResNetTeacher("resnet34", str(path)).identity != first


def test_resnet_teacher_imagenet_weights_unavailable(monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    # Never download in tests, even on a machine with internet access.
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(InputError, match="IMAGENET1K_V1.*--teacher_path"):
        ResNetTeacher("resnet18", None)


def test_random_teacher_warns_and_is_seeded(capsys) -> None:
    before = torch.get_rng_state()
    teacher = ResNetTeacher("resnet18", "random", seed=3)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: teacher resnet18 is randomly initialised (--teacher_path random)"]
    assert teacher.source.random_init and teacher.source.as_dict()["seed"] == 3
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is left as it was
    again, other = ResNetTeacher("resnet18", "random", seed=3), ResNetTeacher("resnet18", "random", seed=4)
    assert again.identity == teacher.identity and other.identity != teacher.identity
    assert torch.equal(again.model.conv1.weight, teacher.model.conv1.weight)


@pytest.mark.parametrize("student_cls, side", [(SpectrogramResNetStudent, 112), (ImageResNetStudent, 28)])
def test_resnet_students(student_cls: type, side: int) -> None:
    torch.manual_seed(0)
    student = student_cls(24, 10)
    logits, feature = student(torch.rand(2, 1, side, side))
    assert logits.shape == (2, 10) and feature.shape == (2, 24)
    (logits.sum() + feature.sum()).backward()
    assert student.backbone.conv1.weight.grad is not None and student.backbone.conv1.in_channels == 1
    three = student_cls(24, 10, in_channels=3)
    assert three(torch.rand(2, 3, side, side))[0].shape == (2, 10) and three.backbone.conv1.in_channels == 3


def test_spectrogram_student_init() -> None:
    torch.manual_seed(0)
    weights = torch.cat(
        [m.weight for m in SpectrogramResNetStudent(8).modules() if isinstance(m, nn.BatchNorm2d)]
    ).detach()
    assert abs(weights.mean().item() - 1.0) < 0.01 and 0.015 < weights.std().item() < 0.025


# --- wav2vec2.py --------------------------------------------------------------------------------


def test_min_samples_for_time_masking(tiny_models) -> None:
    model = Wav2Vec2Model.from_pretrained(tiny_models["wav2vec2"])
    needed = min_samples_for_time_masking(model.config)
    frames = model._get_feat_extract_output_lengths(torch.tensor([needed - 1, needed]))
    assert frames.tolist() == [model.config.mask_time_length - 1, model.config.mask_time_length]
    assert needed == 805  # ENVIRONMENT.md: crashed at 800, ran at 900
    assert min_samples_for_time_masking(Wav2Vec2Config()) == 3280  # wav2vec2-base: 10 frames of 20 ms + 25 ms window


def test_wav2vec2_teacher_encodes_each_clip_unpadded(tiny_models) -> None:
    teacher = Wav2Vec2Teacher("base", tiny_models["wav2vec2"])
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) for n in (1000, 1600, 1000, 2400)]
    together = teacher.encode(clips)
    alone = torch.cat([teacher.encode([clip]) for clip in clips])
    assert together.shape == (4, 32) and together.dtype == torch.float32
    assert torch.allclose(together, alone, atol=1e-5)
    # Per-clip normalisation: gain and offset of the recording do not matter.
    assert torch.allclose(teacher.encode([clips[1] * 5 + 0.3]), together[1:2], atol=1e-4)
    # Why clips are never padded: the group-norm encoder sees the padding.
    padded = torch.zeros(1, 2400)
    padded[0, :1000] = torch.from_numpy((clips[0] - clips[0].mean()) / np.sqrt(clips[0].var() + 1e-7))
    with torch.no_grad():
        hidden = teacher.model(padded).last_hidden_state[:, : teacher.model._get_feat_extract_output_lengths(1000)]
    assert not torch.allclose(hidden.mean(1), together[0:1], atol=1e-3)


def test_wav2vec2_teacher_frozen_and_checks_clips(tiny_models) -> None:
    teacher = Wav2Vec2Teacher("base", tiny_models["wav2vec2"])
    assert_frozen(teacher)
    assert teacher.dim == 32 and teacher.source.source == tiny_models["wav2vec2"] and "per-clip" in teacher.identity
    with pytest.raises(InputError, match="needs at least"):
        teacher.encode([np.zeros(teacher.min_samples - 1, np.float32)])
    with pytest.raises(InputError, match="1-D"):
        teacher.encode([np.zeros((2, 1000), np.float32)])


def test_wav2vec2_student_shortest_input(tiny_models) -> None:
    torch.manual_seed(0)
    student = Wav2Vec2AudioStudent(16, 6, tiny_models["wav2vec2"]).train()
    assert student.wav2vec2.config.mask_time_prob == 0.3
    assert not any(p.requires_grad for p in student.wav2vec2.feature_extractor.parameters())
    n = student.min_input_samples
    mask = torch.ones(2, n, dtype=torch.long)
    mask[1, 500:] = 0  # one short utterance padded to the minimum
    logits, feature = student(torch.randn(2, n), mask)
    assert logits.shape == (2, 6) and feature.shape == (2, 16)
    # Documented limit: below min_input_samples Wav2Vec2's time masking raises; the collate pads up to it.
    with pytest.raises(ValueError, match="mask_length"):
        student(torch.randn(2, n - 1), torch.ones(2, n - 1, dtype=torch.long))
    # An utterance shorter than one frame: the collate says so, on the host.
    collate = WaveformCollate(student.min_input_samples, student.min_frame_samples)
    with pytest.raises(InputError, match=f"fewer than the {student.min_frame_samples} of one frame"):
        collate([(np.zeros(student.min_frame_samples - 1, np.float32), 0, 0), (np.zeros(n, np.float32), 1, 1)])


def through_transformers(student: Wav2Vec2AudioStudent, input_values, attention_mask):
    """The student's forward through transformers' own Wav2Vec2Model.forward (which draws the time masks itself, from
    lengths it reads back from the device, and zeroes padding by boolean indexing)."""
    if student.training:
        noise = torch.randn_like(input_values) * 1e-3
        input_values = input_values + noise * attention_mask.to(input_values.dtype)
    hidden = student.wav2vec2(input_values, attention_mask=attention_mask).last_hidden_state
    frames = student.wav2vec2._get_feat_extract_output_lengths(attention_mask.sum(dim=-1).long())
    feature = student.feature(masked_mean(hidden, torch.arange(hidden.shape[1]) < frames.unsqueeze(1)))
    return student.head(feature), feature


@pytest.mark.parametrize("stable", [False, True], ids=["group norm", "stable layer norm"])
def test_the_student_computes_what_transformers_forward_computes_bit_for_bit(tiny_models, tmp_path, stable) -> None:
    # The student's forward is written for torch.compile and for no reads from the device (time masks drawn on the
    # host and written by index, padding zeroed by selection, LayerDrop drawn outside a compiled graph): the same
    # outputs, gradients (None for a dropped layer) and random draws as transformers' forward.
    folder = tiny_models["wav2vec2"]
    if stable:
        torch.manual_seed(0)
        Wav2Vec2Model(Wav2Vec2Config(**{**TINY_WAV2VEC2, "do_stable_layer_norm": True, "feat_extract_norm": "layer",
                                        "num_hidden_layers": 3})).save_pretrained(tmp_path)
        folder = str(tmp_path)
    student = Wav2Vec2AudioStudent(16, 6, folder)
    student.wav2vec2.config.layerdrop = 0.4  # layers dropped in some of the draws below
    collate = WaveformCollate(student.min_input_samples, student.min_frame_samples)
    dropped = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        waves = [rng.standard_normal(n).astype(np.float32) for n in rng.integers(student.min_frame_samples, 6000, 3)]
        batch = collate([(wave, 0, k) for k, wave in enumerate(waves)])
        for training in (True, False):
            outcomes = []
            for forward in (lambda: student(**batch.inputs), lambda: through_transformers(
                    student, batch.inputs["input_values"], batch.inputs["attention_mask"])):
                student.train(training).zero_grad()
                torch.manual_seed(seed)
                np.random.seed(seed)
                logits, feature = forward()
                (logits.square().sum() + feature.pow(3).mean()).backward()
                grads = [p.grad for p in student.parameters() if p.requires_grad]
                outcomes.append([logits, feature, *grads, torch.rand(2), torch.from_numpy(np.random.rand(2))])
            dropped += sum(grad is None for grad in outcomes[0][2:-2])
            for ours, theirs in zip(*outcomes, strict=True):
                assert (ours is None and theirs is None) or torch.equal(ours, theirs)
    assert dropped > 0  # LayerDrop left layers out (their parameters without gradients)


def test_a_student_config_the_forward_does_not_follow_is_refused(tmp_path) -> None:
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2, mask_feature_prob=0.1)).save_pretrained(tmp_path)
    with pytest.raises(InputError, match="mask_feature_prob 0.1 and add_adapter False; expected 0 and false"):
        Wav2Vec2AudioStudent(16, 6, str(tmp_path))


def test_wav2vec2_student_learns(tiny_models) -> None:
    torch.manual_seed(0)
    student = Wav2Vec2AudioStudent(16, 3, tiny_models["wav2vec2"])
    inputs, mask, labels = torch.randn(3, 900), torch.ones(3, 900), torch.tensor([0, 1, 2])
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=3e-3)

    def eval_loss() -> float:
        student.eval()
        with torch.no_grad():
            return nn.functional.cross_entropy(student(inputs, mask)[0], labels).item()

    before = eval_loss()
    student.train()
    for _ in range(8):
        optimizer.zero_grad()
        nn.functional.cross_entropy(student(inputs, mask)[0], labels).backward()
        optimizer.step()
    assert eval_loss() < before


def test_random_student_warns(monkeypatch, capsys) -> None:
    # A tiny stand-in for wav2vec2-base's config keeps this fast; the rest is the real `random` branch.
    tiny = dataclasses.replace(WAV2VEC2_MODELS["base"], config=lambda: Wav2Vec2Config(**TINY_WAV2VEC2))
    monkeypatch.setitem(WAV2VEC2_MODELS, "base", tiny)
    student = Wav2Vec2AudioStudent(8, 4, "random")
    assert capsys.readouterr().err.strip() == (
        "warning: student wav2vec2-base is randomly initialised (--student_path random)"
    )
    assert student.source.random_init and student.wav2vec2.config.mask_time_prob == 0.3


# --- text.py ------------------------------------------------------------------------------------


def test_text_teacher_ignores_padding(tiny_models) -> None:
    teacher = TextTeacher("bert", tiny_models["bert"])
    assert_frozen(teacher)
    sentences = ["This is about Emotion 3.", "a much longer sentence that forces the first one to be padded a lot"]
    together = teacher.encode(sentences)
    assert together.shape == (2, 32) and teacher.dim == 32
    assert torch.allclose(together[0], teacher.encode(sentences[:1])[0], atol=1e-5)
    assert len(teacher.tokenizer("word " * 300)["input_ids"]) > 128
    assert teacher.encode(["word " * 300]).shape == (1, 32)  # truncated to 128 tokens


def test_bert_student(tiny_models) -> None:
    torch.manual_seed(0)
    student = BertTextStudent(16, 6, tiny_models["bert"])
    batch = student.tokenize(["i am so happy today", "no"])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}
    assert student.tokenize(["word " * 300])["input_ids"].shape[1] == 128
    student.eval()
    logits, feature = student(**batch)
    assert logits.shape == (2, 6) and feature.shape == (2, 16)
    alone, _ = student(**student.tokenize(["no"]))
    assert torch.allclose(alone[0], logits[1], atol=1e-5)  # padding is masked

    labels = torch.tensor([1, 4])
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    with torch.no_grad():
        before = nn.functional.cross_entropy(student(**batch)[0], labels)
    student.train()
    for _ in range(10):
        optimizer.zero_grad()
        nn.functional.cross_entropy(student(**batch)[0], labels).backward()
        optimizer.step()
    student.eval()
    with torch.no_grad():
        assert nn.functional.cross_entropy(student(**batch)[0], labels) < before


@pytest.mark.parametrize("student_cls, model", [(Wav2Vec2AudioStudent, "wav2vec2"), (BertTextStudent, "bert")])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_models, student_cls, model) -> None:
    outcomes = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        student = student_cls(16, 6, tiny_models[model], gradient_checkpointing=checkpointing).train()
        if model == "wav2vec2":
            inputs = {"input_values": torch.randn(3, 4000), "attention_mask": torch.ones(3, 4000, dtype=torch.long)}
        else:
            inputs = dict(student.tokenize(["a happy day", "I am so angry about the car", "fine"]))
        torch.manual_seed(1)  # the same noise and dropout in both, and the same time masks (NumPy's generator)
        np.random.seed(1)
        logits, feature = student(**inputs)
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])) + feature.pow(2).mean()
        loss.backward()
        outcomes.append((loss.detach(), {n: p.grad for n, p in student.named_parameters() if p.grad is not None}))
        backbone = student.wav2vec2 if model == "wav2vec2" else student.bert
        assert backbone.is_activation_checkpointing is checkpointing
    (plain, plain_grads), (checkpointed, checkpointed_grads) = outcomes
    assert torch.allclose(plain, checkpointed, atol=1e-6) and plain_grads.keys() == checkpointed_grads.keys()
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, checkpointed_grads[name], atol=1e-6), name
