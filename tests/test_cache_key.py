"""The disk teacher cache cannot lie: its key follows everything that changes a feature (the teacher's weights by
content, the hub revision, the data by content, --max_audio_seconds, --pca, autocast, the device), and runs that
share a --cache_dir never crash each other."""

import os
import shutil
import socket

import numpy as np
import pytest
import soundfile
import torch

from datasets.avmnist import ImageTeacherInputs, load_avmnist, wav_paths
from datasets.collate import Texts, WaveformFiles
from models import pretrained
from models.pretrained import ModelSource
from models.tiny import save_tiny_wav2vec2
from models.wav2vec2 import Wav2Vec2Teacher
from tests.helpers import dead_writer
from utils.experiment import InputError
from utils.teacher_features import TeacherFeatureCache, cache_key

CPU = torch.device("cpu")


def keep_date(path, change):
    """Apply `change` to the file at `path`, then put its modification date back, as `cp -p` or `rsync -a` do."""
    stat = path.stat()
    change(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_every_part_of_the_key_changes_it():
    base = dict(teacher_identity="t", data_fingerprint="d", amp_dtype=None, device_type="cpu", block=1)
    changes = [{"teacher_identity": "t2"}, {"data_fingerprint": "d2"}, {"amp_dtype": torch.bfloat16},
               {"amp_dtype": torch.float16}, {"device_type": "cuda"}, {"block": 256}]
    keys = {cache_key(**base)} | {cache_key(**{**base, **change}) for change in changes}
    assert len(keys) == 1 + len(changes)


def test_local_weights_are_identified_by_their_bytes_not_their_dates(tiny_models, tmp_path):
    folder = tmp_path / "teacher"
    shutil.copytree(tiny_models["wav2vec2"], folder)
    first = Wav2Vec2Teacher("base", str(folder)).identity
    other = save_tiny_wav2vec2(tmp_path / "other", seed=1)
    keep_date(folder / "model.safetensors", lambda path: shutil.copyfile(other / "model.safetensors", path))
    assert Wav2Vec2Teacher("base", str(folder)).identity != first


def test_a_hub_teacher_is_identified_by_the_revision_resolved(tiny_models, tmp_path, monkeypatch):
    teacher = Wav2Vec2Teacher("base", tiny_models["wav2vec2"])
    teacher.source = ModelSource("wav2vec2-base", "facebook/wav2vec2-base-960h", False, 32)
    digests = []
    for revision in ("1c4cb9d", "22aad52"):  # the same files in two snapshots of the hub cache
        snapshot = tmp_path / "snapshots" / revision
        shutil.copytree(tiny_models["wav2vec2"], snapshot)
        monkeypatch.setattr(pretrained, "try_to_load_from_cache", lambda repo, name: str(snapshot / name))
        digests.append(teacher.weights_digest())
    assert digests[0].startswith("facebook/wav2vec2-base-960h@1c4cb9d:") and digests[0] != digests[1]


def test_data_is_identified_by_content(fresh_avmnist):
    data = load_avmnist(fresh_avmnist, images=True, spectrograms=False)
    images = ImageTeacherInputs(data, pca=True).fingerprint
    assert ImageTeacherInputs(data, pca=False).fingerprint != images
    data.images["train"][0, 0, 0, 0] += 1 / 255
    assert ImageTeacherInputs(data, pca=True).fingerprint != images

    paths = wav_paths(data)
    waveforms = WaveformFiles(paths).fingerprint
    assert WaveformFiles(paths, max_seconds=0.1).fingerprint != waveforms
    samples, rate = soundfile.read(paths[3], dtype="int16")
    keep_date(paths[3], lambda path: soundfile.write(path, samples[::-1], rate, subtype="PCM_16"))
    assert WaveformFiles(paths).fingerprint != waveforms

    assert Texts(["a happy day"]).fingerprint != Texts(["a sad day"]).fingerprint


def test_runs_sharing_a_cache_folder_never_crash_each_other(tiny_models, fresh_avmnist, tmp_path):
    teacher = Wav2Vec2Teacher("base", tiny_models["wav2vec2"])
    inputs = WaveformFiles(wav_paths(load_avmnist(fresh_avmnist, images=True, spectrograms=False)))
    first = TeacherFeatureCache(teacher, inputs, CPU, cache_dir=tmp_path, progress=False)
    second = TeacherFeatureCache(teacher, inputs, CPU, cache_dir=tmp_path, progress=False)  # started meanwhile
    first.prepare(np.arange(0, 10))
    second.prepare(np.arange(5, 15))  # replaces the file with its own rows
    first.prepare(np.arange(10, 20))
    third = TeacherFeatureCache(teacher, inputs, CPU, cache_dir=tmp_path, progress=False)
    assert third.loaded == 20  # the last writer's rows: first's 0..19
    assert torch.equal(third(torch.arange(20)), first(torch.arange(20)))
    assert torch.allclose(third(torch.arange(5, 15)), second(torch.arange(5, 15)))


def test_temporaries_of_killed_writers_are_removed_and_a_folder_in_the_cache_files_place_is_refused(
        tiny_models, fresh_avmnist, tmp_path):
    teacher = Wav2Vec2Teacher("base", tiny_models["wav2vec2"])
    inputs = WaveformFiles(wav_paths(load_avmnist(fresh_avmnist, images=True, spectrograms=False)))
    TeacherFeatureCache(teacher, inputs, CPU, cache_dir=tmp_path, progress=False).prepare(np.arange(4))
    (path,) = tmp_path.glob("*.safetensors")
    killed = path.with_name(f"{path.name}.tmp.{dead_writer()}")
    running = path.with_name(f"{path.name}.tmp.{socket.gethostname()}.{os.getpid()}")  # a writer still at work
    elsewhere = path.with_name(f"{path.name}.tmp.{dead_writer('node2')}")  # another host's: cannot be judged here
    for temporary in (killed, running, elsewhere):
        temporary.write_bytes(b"half")
    cache = TeacherFeatureCache(teacher, inputs, CPU, cache_dir=tmp_path, progress=False)
    assert cache.loaded == 4 and not killed.exists() and running.exists() and elsewhere.exists()
    path.unlink()
    path.mkdir()  # where the cache file belongs: refused, not removed
    with pytest.raises(InputError, match=f"{path} is not a file; expected this run's teacher cache file there"):
        TeacherFeatureCache(teacher, inputs, CPU, cache_dir=tmp_path, progress=False)
