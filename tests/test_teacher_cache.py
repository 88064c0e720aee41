"""The teacher feature cache: equal to the in-loop teacher, reused from disk, rebuilt when its key changes
or its file is damaged. (ResNet and wav2vec2 equality through AVMNIST: tests/test_trials.py.)"""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import IEMOCAP_T2A
from datasets.avmnist import ImageTeacherInputs, load_avmnist, wav_paths
from datasets.collate import WaveformFiles
from datasets.tools.synthetic import write_synthetic_avmnist
from models.resnet import ResNetTeacher
from models.tiny import save_tiny_wav2vec2
from models.wav2vec2 import Wav2Vec2Teacher
from utils import teacher_features
from utils.teacher_features import InLoopTeacher, TeacherFeatureCache
from utils.trial import teacher_features as feature_source

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def wav2vec2_teacher(tiny_models):
    return Wav2Vec2Teacher("base", tiny_models["wav2vec2"])


def waveforms(avmnist: Path) -> WaveformFiles:
    """The A->V teacher inputs, built afresh as a new run builds them."""
    return WaveformFiles(wav_paths(load_avmnist(avmnist, images=True, spectrograms=False)))


def forbid_forward(teacher: Wav2Vec2Teacher, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(inputs: list) -> torch.Tensor:
        raise AssertionError("the teacher ran although its features were on disk")

    monkeypatch.setattr(teacher, "encode", fail)


def test_text_teacher_cache_equals_in_loop_teacher(iemocap, tiny_models):
    argv = ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--teacher_path",
            tiny_models["bert"], "--student_path", tiny_models["wav2vec2"], "--no_progress"]
    args = IEMOCAP_T2A.parse_args(argv)
    experiment = IEMOCAP_T2A.build_experiment(args)
    cache = feature_source(experiment, args, CPU)
    in_loop = feature_source(experiment, IEMOCAP_T2A.parse_args([*argv, "--teacher_cache", "off"]), CPU)
    assert isinstance(cache, TeacherFeatureCache) and isinstance(in_loop, InLoopTeacher)
    keys = np.arange(len(experiment.teacher_inputs))  # the six templates, then every transcript
    cache.prepare(keys)
    assert len(cache) == len(keys) and cache.nbytes == len(keys) * 32 * 4  # each distinct input once
    # Batches as training draws them: repeated templates, and transcripts of different lengths together.
    for batch in (np.array([3, 3, 0, 5]), np.array([6, 0, len(keys) - 1, 7]), keys):
        assert torch.allclose(cache(batch), in_loop(batch), atol=1e-5)


def test_disk_cache_is_reused_without_any_teacher_forward(tmp_path, fresh_avmnist, wav2vec2_teacher, monkeypatch):
    keys = np.arange(len(waveforms(fresh_avmnist)))
    first = TeacherFeatureCache(wav2vec2_teacher, waveforms(fresh_avmnist), CPU, cache_dir=tmp_path, progress=False)
    first.prepare(keys)
    assert (first.computed, first.loaded) == (len(keys), 0)
    forbid_forward(wav2vec2_teacher, monkeypatch)
    second = TeacherFeatureCache(wav2vec2_teacher, waveforms(fresh_avmnist), CPU, cache_dir=tmp_path, progress=False)
    second.prepare(keys)
    assert (second.computed, second.loaded) == (0, len(keys))
    assert torch.equal(second(keys), first(keys))


def test_cache_is_rebuilt_when_a_wav_changes(tmp_path, wav2vec2_teacher):
    data = write_synthetic_avmnist(tmp_path / "avmnist", n_train=6, n_test=2)
    keys = np.arange(8)
    TeacherFeatureCache(wav2vec2_teacher, waveforms(data), CPU, cache_dir=tmp_path / "cache").prepare(keys)
    wav = data / "audio" / "audio_mnist_1.wav"
    samples, rate = soundfile.read(wav, dtype="float32")
    soundfile.write(wav, samples[::-1], rate, subtype="PCM_16")  # same length, other content
    rebuilt = TeacherFeatureCache(wav2vec2_teacher, waveforms(data), CPU, cache_dir=tmp_path / "cache")
    assert rebuilt.loaded == 0
    rebuilt.prepare(keys)
    assert rebuilt.computed == len(keys)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # a new key, a new file


def test_data_fingerprint_follows_the_arrays(tmp_path):
    def fingerprint(root: Path) -> str:
        return ImageTeacherInputs(load_avmnist(root, images=True, spectrograms=False), pca=True).fingerprint

    data = write_synthetic_avmnist(tmp_path / "avmnist", n_train=6, n_test=2, seed=3)
    before = fingerprint(data)
    assert fingerprint(data) == before
    images = np.load(data / "image_pca" / "train_data.npy", allow_pickle=False)
    np.save(data / "image_pca" / "train_data.npy", 255 - images)
    assert fingerprint(data) != before


def test_cache_is_rebuilt_when_the_teacher_changes(tmp_path, fresh_avmnist, wav2vec2_teacher):
    keys = np.arange(4)
    TeacherFeatureCache(wav2vec2_teacher, waveforms(fresh_avmnist), CPU, cache_dir=tmp_path).prepare(keys)
    other = Wav2Vec2Teacher("base", str(save_tiny_wav2vec2(tmp_path / "other_wav2vec2", seed=1)))
    rebuilt = TeacherFeatureCache(other, waveforms(fresh_avmnist), CPU, cache_dir=tmp_path)
    assert rebuilt.loaded == 0
    rebuilt.prepare(keys)
    assert rebuilt.computed == len(keys)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())


def wrong_shape(path: Path) -> None:
    save_file({"keys": torch.arange(4), "features": torch.zeros(4, 7)}, str(path))


def wrong_dtype(path: Path) -> None:
    save_file({"keys": torch.arange(4), "features": torch.zeros(4, 32, dtype=torch.float16)}, str(path))


def keys_out_of_range(path: Path) -> None:
    save_file({"keys": torch.tensor([0, 1, 2, 99]), "features": torch.zeros(4, 32)}, str(path))


def missing_tensor(path: Path) -> None:
    save_file({"keys": torch.arange(4)}, str(path))


def features_overwritten(path: Path) -> None:
    """A valid file of the right name and shapes, whose features are not those it was written with."""
    with safe_open(str(path), framework="pt") as stored:
        metadata, keys = stored.metadata(), stored.get_tensor("keys")
    save_file({"keys": keys, "features": torch.zeros(len(keys), 32)}, str(path), metadata=metadata)


def key_of_another_cache(path: Path) -> None:
    with safe_open(str(path), framework="pt") as stored:
        metadata = stored.metadata()
        tensors = {name: stored.get_tensor(name) for name in stored.keys()}
    save_file(tensors, str(path), metadata={**metadata, "key": "0" * 64})


@pytest.mark.parametrize("damage", [truncate, garbage, wrong_shape, wrong_dtype, keys_out_of_range, missing_tensor,
                                    features_overwritten, key_of_another_cache])
def test_corrupted_cache_file_is_reported_in_one_line_and_rebuilt(tmp_path, fresh_avmnist, wav2vec2_teacher, damage,
                                                                   capsys):
    keys = np.arange(4)
    good = TeacherFeatureCache(wav2vec2_teacher, waveforms(fresh_avmnist), CPU, cache_dir=tmp_path, progress=False)
    good.prepare(keys)
    damage(good.path)
    capsys.readouterr()
    rebuilt = TeacherFeatureCache(wav2vec2_teacher, waveforms(fresh_avmnist), CPU, cache_dir=tmp_path, progress=False)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "corrupted" in line]
    assert len(warnings) == 1 and str(good.path) in warnings[0] and "rebuilding" in warnings[0]
    assert rebuilt.loaded == 0
    rebuilt.prepare(keys)
    assert rebuilt.computed == len(keys)
    assert torch.allclose(rebuilt(keys), good(keys), atol=1e-6)
    reread = TeacherFeatureCache(wav2vec2_teacher, waveforms(fresh_avmnist), CPU, cache_dir=tmp_path, progress=False)
    assert reread.loaded == len(keys)  # the rebuilt file is whole again


def test_features_do_not_depend_on_which_keys_were_missing_with_them(tmp_path, wav2vec2_teacher):
    # Equal-length clips would share a batch of the teacher: each feature is computed alone instead.
    data = write_synthetic_avmnist(tmp_path / "avmnist", n_train=12, n_test=4)
    for key in range(1, 7):  # six clips of one length
        soundfile.write(data / "audio" / f"audio_mnist_{key}.wav", np.sin(np.arange(3000) * 0.01 * key), 8000)
    inputs = waveforms(data)
    keys = np.arange(len(inputs))
    at_once = TeacherFeatureCache(wav2vec2_teacher, inputs, CPU, progress=False)
    at_once.prepare(keys)
    grown = TeacherFeatureCache(wav2vec2_teacher, inputs, CPU, cache_dir=tmp_path / "cache", progress=False)
    grown.prepare(keys[:1])  # another run, or a trial before, needed one of the six (batched, 1e-7 apart)
    again = TeacherFeatureCache(wav2vec2_teacher, inputs, CPU, cache_dir=tmp_path / "cache", progress=False)
    again.prepare(keys)
    assert again.loaded == 1 and again.computed == len(keys) - 1
    assert torch.equal(again(keys), at_once(keys))


def image_inputs(avmnist: Path) -> ImageTeacherInputs:
    return ImageTeacherInputs(load_avmnist(avmnist, images=True, spectrograms=False), pca=True)


def batch_sizes(teacher, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of inputs of each teacher forward from now on."""
    sizes, encode = [], teacher.encode
    monkeypatch.setattr(teacher, "encode", lambda inputs: sizes.append(len(inputs)) or encode(inputs))
    return sizes


@pytest.fixture(scope="module")
def resnet_teacher(tiny_models):
    return ResNetTeacher("resnet18", tiny_models["resnet18"])


def test_the_cache_computes_in_the_blocks_the_teacher_declares(avmnist, resnet_teacher, wav2vec2_teacher,
                                                                monkeypatch):
    assert (resnet_teacher.cache_block, wav2vec2_teacher.cache_block) == (256, 1)
    images = TeacherFeatureCache(resnet_teacher, image_inputs(avmnist), CPU, progress=False)
    sizes = batch_sizes(resnet_teacher, monkeypatch)
    images.prepare(np.array([3]))
    assert sizes == [130] and images.computed == len(images) == 130  # one block, cut at the 130 inputs
    clips = TeacherFeatureCache(wav2vec2_teacher, waveforms(avmnist), CPU, progress=False)
    sizes = batch_sizes(wav2vec2_teacher, monkeypatch)
    clips.prepare(np.array([3, 7, 100]))
    assert sizes == [1, 1, 1] and clips.computed == 3


def test_blocked_features_do_not_depend_on_which_keys_were_missing_first(tmp_path, avmnist, resnet_teacher,
                                                                         monkeypatch):
    # An image's feature computed alone and in a batch differ in the last bits (ResNet-18 on this CPU: about 1e-6),
    # so computing only the missing keys would tie a feature to the keys that happened to be missing with it.
    monkeypatch.setattr(resnet_teacher, "cache_block", 16)
    keys = np.arange(130)
    at_once = TeacherFeatureCache(resnet_teacher, image_inputs(avmnist), CPU, progress=False)
    at_once.prepare(keys)
    sizes = batch_sizes(resnet_teacher, monkeypatch)
    first = TeacherFeatureCache(resnet_teacher, image_inputs(avmnist), CPU, cache_dir=tmp_path, progress=False)
    first.prepare(np.array([5]))  # one run needed one key: keys 0..15 are computed and saved
    grown = TeacherFeatureCache(resnet_teacher, image_inputs(avmnist), CPU, cache_dir=tmp_path, progress=False)
    grown.prepare(np.array([129, 40, 7]))  # a later run reads 0..15, computes 32..47 and the last block, 128..129
    assert (first.computed, grown.loaded, grown.computed, sizes) == (16, 16, 18, [16, 16, 2])
    grown.prepare(keys)
    assert grown.computed == 130 - 16 and torch.equal(grown(keys), at_once(keys))
    assert torch.allclose(grown(keys), InLoopTeacher(resnet_teacher, image_inputs(avmnist), CPU)(keys), atol=1e-5)


def test_each_process_computes_whole_blocks_of_its_share(avmnist, resnet_teacher, monkeypatch):
    monkeypatch.setattr(resnet_teacher, "cache_block", 16)
    keys = np.arange(130)
    alone = TeacherFeatureCache(resnet_teacher, image_inputs(avmnist), CPU, progress=False)
    alone.prepare(keys)
    # The second of two processes: blocks 4..8 (keys 64..129) are its share; the first process's rows arrive
    # through the gather.
    monkeypatch.setattr(teacher_features, "share", lambda n: slice(n // 2, n))
    monkeypatch.setattr(teacher_features, "gather_rows", lambda rows: torch.cat([alone(keys[:64]), rows]))
    monkeypatch.setattr(teacher_features, "gather_objects", lambda count: [64, count])
    sizes = batch_sizes(resnet_teacher, monkeypatch)
    second = TeacherFeatureCache(resnet_teacher, image_inputs(avmnist), CPU, progress=False)
    second.prepare(keys)
    assert sizes == [16, 16, 16, 16, 2] and second.computed == 66
    assert torch.equal(second(keys), alone(keys))
