"""The espeak-ng synthesizer, the spectrogram, and the demo AVMNIST / IEMOCAP builders."""

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from datasets.tools import demo
from datasets.tools.avmnist_writer import MARKER, is_complete
from datasets.tools.spectrogram import log_power_spectrogram
from datasets.tools.speech import VOICES, synthesizer
from tests.helpers import dead_writer
from utils.experiment import InputError

PER_CLASS = 40  # 400 digits: a few seconds to build, enough to learn from


@pytest.fixture(scope="module")
def avmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.build_demo_avmnist(tmp_path_factory.mktemp("demo"), per_class=PER_CLASS)


@pytest.fixture(scope="module")
def iemocap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.build_demo_iemocap(tmp_path_factory.mktemp("demo"))


def load(folder: Path, name: str) -> np.ndarray:
    return np.load(folder / name, allow_pickle=False)


# ------------------------------------------------------------------------------------ synthesizer


def test_synthesizer_gives_distinct_trimmed_audio_for_words_and_voices() -> None:
    speak = synthesizer().say
    seven_us = speak("seven", "en-us", 175, 50, 8000)
    seven_scot = speak("seven", "en-gb-scotland+f2", 175, 50, 8000)
    three_us = speak("three", "en-us", 175, 50, 8000)
    for wave in (seven_us, seven_scot, three_us):
        assert wave.dtype == np.float32 and wave.ndim == 1 and 0.1 * 8000 < wave.size < 1.0 * 8000
        assert 0.05 < np.abs(wave).max() <= 1.0
        assert np.abs(wave[:40]).max() < 0.5 * np.abs(wave).max()  # starts near silence, not mid-word
    assert not np.array_equal(seven_us, seven_scot) and not np.array_equal(seven_us, three_us)


def test_say_is_a_pure_function_of_its_arguments() -> None:
    speak = synthesizer().say
    first = speak("eight", "en+f3", 160, 40, 8000)
    speak("nine", "en-029+klatt4", 220, 70, 16000)  # the library's state would otherwise carry over
    assert np.array_equal(first, speak("eight", "en+f3", 160, 40, 8000))
    assert abs(speak("eight", "en+f3", 160, 40, 16000).size - 2 * first.size) <= 4


def test_every_listed_voice_speaks_differently() -> None:
    clips = [synthesizer().say("one", voice, 175, 50, 8000) for voice in VOICES]
    assert len(VOICES) >= 100 and all(clip.size > 800 for clip in clips)
    assert len({clip.tobytes() for clip in clips}) == len(VOICES)


@pytest.mark.parametrize("voice, rate", [("en-gb", 175), ("no-such-voice", 175), ("en-us", 20)])
def test_bad_voice_or_rate_is_an_input_error(voice: str, rate: int) -> None:
    with pytest.raises(InputError):
        synthesizer().say("one", voice, rate, 50, 8000)


# ------------------------------------------------------------------------------------ spectrogram


def test_spectrogram_shape_scale_and_frequency_axis() -> None:
    time = np.arange(4000) / 8000
    tone = 0.5 * np.sin(2 * np.pi * 1000 * time)
    image = log_power_spectrogram(tone, 8000)
    assert image.shape == (112, 112) and image.dtype == np.uint8 and image.max() == 255
    assert abs(int(np.argmax(image[:, 10])) - round(1000 / 4000 * 111)) <= 1  # row 0 = 0 Hz, last = Nyquist
    assert image[:, 60:].max() == 0  # 0.5 s fills ~46 frames of 10 ms; the rest is silence
    assert np.array_equal(image, log_power_spectrogram(tone * 0.01, 8000))  # scaled per clip
    long_image = log_power_spectrogram(np.tile(tone, 6), 8000)  # 3 s: squeezed, not cut
    assert long_image[:, -1].max() == 255
    assert not log_power_spectrogram(np.zeros(100), 8000).any()
    with pytest.raises(ValueError):
        log_power_spectrogram(np.zeros((2, 100)), 8000)


# ------------------------------------------------------------------------------------ demo AVMNIST


def test_demo_avmnist_layout(avmnist: Path) -> None:
    n = {}
    for split in ("train", "test"):
        labels = load(avmnist, f"{split}_labels.npy")
        n[split] = len(labels)
        assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(10))
        assert np.bincount(labels).tolist() == [np.bincount(labels)[0]] * 10  # stratified: equal shares
        image = load(avmnist, f"image/{split}_data.npy")
        pca = load(avmnist, f"image_pca/{split}_data.npy")
        spectrogram = load(avmnist, f"spectrogram/{split}_data.npy")
        assert image.shape == (n[split], 28, 28) and image.dtype == np.uint8 and image.max() > 200
        assert not image[:, :4].any() and not image[:, :, -4:].any()  # MNIST-like margin
        assert pca.shape == (n[split], 784) and pca.dtype == np.float32 and 0 <= pca.min() and pca.max() <= 255
        assert spectrogram.shape == (n[split], 112, 112) and spectrogram.dtype == np.uint8
    assert n["train"] + n["test"] == 10 * PER_CLASS and 0.15 < n["test"] / (10 * PER_CLASS) < 0.3
    wavs = sorted((avmnist / "audio").iterdir())
    assert {w.name for w in wavs} == {f"audio_mnist_{k}.wav" for k in range(1, n["train"] + n["test"] + 1)}
    spectrograms = np.concatenate([load(avmnist, f"spectrogram/{split}_data.npy") for split in ("train", "test")])
    for k in (1, n["train"], n["train"] + 1, n["train"] + n["test"]):  # the WAV of item i is its spectrogram's audio
        info = soundfile.info(avmnist / "audio" / f"audio_mnist_{k}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
        wave, _ = soundfile.read(avmnist / "audio" / f"audio_mnist_{k}.wav", dtype="float32")
        assert np.array_equal(log_power_spectrogram(wave, 8000), spectrograms[k - 1])


def test_demo_avmnist_holds_out_test_voices(avmnist: Path) -> None:
    meta = json.loads((avmnist / "demo_meta.json").read_text())
    voices = {split: {meta["speakers"][s]["voice"] for s in meta[f"{split}_speaker"]} for split in ("train", "test")}
    assert voices["train"] <= set(meta["train_voices"]) and voices["test"] <= set(meta["test_voices"])
    assert not set(meta["train_voices"]) & set(meta["test_voices"])
    assert len(voices["train"]) > 20 and len(voices["test"]) > 5
    assert len(meta["test_speaker"]) == len(load(avmnist, "test_labels.npy"))


def test_demo_avmnist_is_learnable_on_held_out_voices(avmnist: Path) -> None:
    def features(sub: str, split: str) -> np.ndarray:
        data = load(avmnist, f"{sub}/{split}_data.npy").astype(np.float32) / 255
        if sub == "spectrogram":  # 4×4 mean pooling keeps the fit fast
            data = data.reshape(len(data), 28, 4, 28, 4).mean(axis=(2, 4))
        return data.reshape(len(data), -1)

    labels = {split: load(avmnist, f"{split}_labels.npy") for split in ("train", "test")}
    for sub in ("spectrogram", "image", "image_pca"):
        with threadpool_limits(limits=1, user_api="blas"):  # multi-threaded BLAS crawls on busy cores
            model = LogisticRegression(max_iter=500).fit(features(sub, "train"), labels["train"])
        assert model.score(features(sub, "test"), labels["test"]) > 0.6, sub  # chance is 0.1


def test_demo_avmnist_complete_build_is_reused(avmnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = (avmnist / MARKER).stat().st_mtime_ns

    def must_not_rebuild(*_: object) -> None:
        raise AssertionError("a complete build was rebuilt")

    monkeypatch.setattr(demo, "_write_demo_avmnist", must_not_rebuild)
    assert demo.build_demo_avmnist(avmnist.parent, per_class=PER_CLASS) == avmnist
    assert (avmnist / MARKER).stat().st_mtime_ns == before


def test_half_written_or_other_demo_build_is_replaced(tmp_path: Path) -> None:
    partial = tmp_path / "avmnist"
    (partial / "image").mkdir(parents=True)
    (partial / "image" / "train_data.npy").write_bytes(b"\x93NUMPY half")  # no marker: interrupted
    out = demo.build_demo_avmnist(tmp_path, per_class=3)
    assert is_complete(out, {"builder": "demo-avmnist", "version": 1, "per_class": 3})
    assert load(out, "image/train_data.npy").shape[1:] == (28, 28)
    rebuilt = demo.build_demo_avmnist(tmp_path, per_class=4)  # other parameters: rebuilt, not reused
    assert len(load(rebuilt, "train_labels.npy")) + len(load(rebuilt, "test_labels.npy")) == 40


def test_interrupted_demo_build_leaves_nothing_and_stale_partials_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "write_avmnist", interrupt)
    with pytest.raises(KeyboardInterrupt):
        demo.build_demo_avmnist(tmp_path, per_class=3)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    stale = tmp_path / f".avmnist.partial-{dead_writer()}"  # left by a killed build
    stale.mkdir()
    out = demo.build_demo_avmnist(tmp_path, per_class=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avmnist"] and (out / MARKER).is_file()


def test_demo_main_builds_both_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(demo, "build_demo_avmnist", lambda root: root / "avmnist")
    monkeypatch.setattr(demo, "build_demo_iemocap", lambda root: root / "iemocap")
    assert demo.main(["--demo_dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"AVMNIST demo data: {tmp_path / 'avmnist'} (")
    assert lines[1].startswith(f"IEMOCAP demo data: {tmp_path / 'iemocap'} (")


# ------------------------------------------------------------------------------------ demo IEMOCAP


def test_demo_iemocap_tree_parses_and_agrees(iemocap: Path) -> None:
    base = iemocap / "IEMOCAP"
    assert sorted(p.name for p in base.glob("Session*")) == [f"Session{s}" for s in range(1, 6)]
    labels, sessions_of = {}, {}
    for evaluation in base.glob("Session*/dialog/EmoEvaluation/*.txt"):
        for line in evaluation.read_text().splitlines():
            if line.startswith("["):  # as torchaudio.datasets.IEMOCAP reads it
                fields = line.split("\t")
                assert re.fullmatch(r"\[\d+\.\d{4} - \d+\.\d{4}\]", fields[0]) and fields[3].startswith("[")
                labels[fields[1]] = fields[2]
                sessions_of[fields[1]] = evaluation.parents[2].name
    transcripts = {}
    for transcription in base.glob("Session*/dialog/transcriptions/*.txt"):
        for line in transcription.read_text().splitlines():
            match = re.fullmatch(r"(\S+) \[\d{3}\.\d{4}-\d{3}\.\d{4}\]: (.+)", line)
            assert match, line
            transcripts[match[1]] = match[2]
    wavs = {p.stem: p for p in base.glob("Session*/sentences/wav/*/*.wav")}
    assert set(labels) == set(transcripts) == set(wavs) == {p.stem for p in (base / "texts").glob("*.json")}
    for stem, text in transcripts.items():
        assert re.fullmatch(r"Ses0[1-5][FM]_(impro|script)\d\d(_\d)?_[FM]\d{3}", stem)
        assert json.loads((base / "texts" / f"{stem}.json").read_text()) == {"Utterance": text}
        assert wavs[stem].parent.name == stem.rsplit("_", 1)[0] and sessions_of[stem] == f"Session{stem[4]}"
    counts = Counter(labels.values())
    assert all(20 <= counts[label] <= 30 for label in demo.EMOTIONS)
    assert set(counts) - set(demo.EMOTIONS) == set(demo.DROPPED_LABELS)
    for session in range(1, 6):  # a leave-one-session-out split sees every class
        assert {labels[s] for s in labels if sessions_of[s] == f"Session{session}"} >= set(demo.EMOTIONS)
    for path in wavs.values():
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16") and 0.3 < info.duration <= 2.5


def test_demo_iemocap_emotion_is_in_the_prosody(iemocap: Path) -> None:
    seconds_per_word: dict[str, list[float]] = {}
    high_share: dict[str, list[float]] = {}  # of the energy above 2 kHz: vocal effort's spectral tilt
    for line in (iemocap / "IEMOCAP").glob("Session*/dialog/transcriptions/*.txt"):
        for entry in line.read_text().splitlines():
            stem, text = entry.split(" ", 1)[0], entry.split(": ", 1)[1]
            evaluation = line.parents[1] / "EmoEvaluation" / line.name
            label = re.search(rf"\t{stem}\t(\w+)\t", evaluation.read_text())[1]
            wav = next((iemocap / "IEMOCAP").glob(f"Session*/sentences/wav/*/{stem}.wav"))
            seconds_per_word.setdefault(label, []).append(soundfile.info(wav).duration / len(text.split()))
            wave, rate = soundfile.read(wav, dtype="float32")
            power = np.abs(np.fft.rfft(wave)) ** 2
            high_share.setdefault(label, []).append(power[np.fft.rfftfreq(wave.size, 1 / rate) > 2000].sum() / power.sum())
    mean = {label: float(np.mean(values)) for label, values in seconds_per_word.items()}
    assert mean["sad"] > mean["neu"] > mean["ang"]
    tilt = {label: float(np.mean(values)) for label, values in high_share.items()}
    assert tilt["sad"] < tilt["neu"] < tilt["fru"] < tilt["hap"] < tilt["exc"] < tilt["ang"]


def test_demo_iemocap_matches_torchaudio_selection(iemocap: Path) -> None:
    from torchaudio.datasets import (
        IEMOCAP,  # get_metadata does no audio I/O (no FFmpeg needed)
    )

    dataset = IEMOCAP(iemocap)
    labels = [dataset.get_metadata(n)[3] for n in range(len(dataset))]
    assert len(dataset) == 6 * 25 and set(labels) == set(demo.EMOTIONS)
