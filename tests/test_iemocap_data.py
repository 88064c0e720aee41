"""IEMOCAP data side: selection equal to torchaudio's, transcripts, waveforms, splits, padding, tools."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torchaudio

from datasets import audio
from datasets.audio import read_waveform
from datasets.collate import pad_waveforms
from datasets.iemocap import (
    LABELS_6,
    index_iemocap,
    load_transcripts,
    resolve_iemocap_root,
    split_by_session,
    split_utterances,
)
from datasets.tools.prepare_iemocap import main as prepare_main
from datasets.tools.synthetic_iemocap import write_synthetic_iemocap
from models.wav2vec2 import normalize_waveform
from tests.helpers import results_in, run_in_process
from utils.experiment import InputError

PER_CLASS = 20  # of the shared `iemocap` tree (conftest.py)


def test_selection_equals_torchaudio(iemocap: Path) -> None:
    reference = torchaudio.datasets.IEMOCAP(iemocap)
    ours = index_iemocap(iemocap)
    assert len(ours) == len(reference) == 6 * PER_CLASS
    for n, u in enumerate(ours):
        rel_path, _, stem, label, _ = reference.get_metadata(n)
        assert (u.stem, LABELS_6[u.label], u.wav_path) == (stem, label, iemocap / "IEMOCAP" / rel_path)
        assert rel_path.startswith(f"Session{u.session}/")


def test_selection_skips_what_torchaudio_skips(iemocap: Path) -> None:
    stems = {u.stem for u in index_iemocap(iemocap)}
    # F900: labelled, no WAV; M900: WAV, no label line.
    assert not any(s.endswith(("F900", "M900")) for s in stems)
    label_lines = [line.split("\t") for path in (iemocap / "IEMOCAP").glob("Session*/dialog/EmoEvaluation/*.txt")
                   for line in path.read_text().splitlines() if line.startswith("[")]
    other_labels = {fields[1] for fields in label_lines if fields[2] not in LABELS_6}
    assert len(other_labels) == 5 and not other_labels & stems  # xxx, sur, fea, oth, dis
    assert {u.session for u in index_iemocap(iemocap)} == {1, 2, 3, 4, 5}


def test_audio_dir_forms_resolve(fresh_iemocap: Path) -> None:
    expected = [u.stem for u in index_iemocap(fresh_iemocap)]
    assert resolve_iemocap_root(fresh_iemocap) == fresh_iemocap / "IEMOCAP"
    assert [u.stem for u in index_iemocap(fresh_iemocap / "IEMOCAP")] == expected
    release = fresh_iemocap / "IEMOCAP_full_release"
    (fresh_iemocap / "IEMOCAP").rename(release)
    for form in (fresh_iemocap, release):
        assert resolve_iemocap_root(form) == release
        assert [u.stem for u in index_iemocap(form)] == expected


def test_missing_audio_dir_and_sessions(tmp_path: Path, fresh_iemocap: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        resolve_iemocap_root(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no IEMOCAP Session1..Session5"):
        index_iemocap(fresh_iemocap / "IEMOCAP" / "texts")
    shutil.rmtree(fresh_iemocap / "IEMOCAP" / "Session3")
    with pytest.raises(InputError, match="Session3"):
        index_iemocap(fresh_iemocap)


def test_empty_selection_and_malformed_label_line(fresh_iemocap: Path) -> None:
    emo_files = list((fresh_iemocap / "IEMOCAP").glob("Session*/dialog/EmoEvaluation/*.txt"))
    for path in emo_files:
        path.write_text("% header only\n")
    with pytest.raises(InputError, match="no IEMOCAP utterances"):
        index_iemocap(fresh_iemocap)
    emo_files[0].write_text("[1.0 - 2.0] no tabs here\n")
    with pytest.raises(InputError, match=re.escape(f"malformed line 1 in {emo_files[0]}")):
        index_iemocap(fresh_iemocap)


def test_four_classes(iemocap: Path) -> None:
    six = index_iemocap(iemocap, classes=6)
    four = index_iemocap(iemocap, classes=4)
    mapping = {"neu": 0, "hap": 1, "exc": 1, "ang": 2, "sad": 3}
    expected = [(u.stem, mapping[LABELS_6[u.label]]) for u in six if LABELS_6[u.label] != "fru"]
    assert [(u.stem, u.label) for u in four] == expected
    assert np.bincount([u.label for u in four]).tolist() == [PER_CLASS, 2 * PER_CLASS, PER_CLASS, PER_CLASS]
    with pytest.raises(ValueError):
        index_iemocap(iemocap, classes=5)


def test_transcripts_from_text_dir_equal_transcriptions(iemocap: Path) -> None:
    utterances = index_iemocap(iemocap)
    from_json = load_transcripts(utterances, iemocap, iemocap / "IEMOCAP" / "texts")
    from_release = load_transcripts(utterances, iemocap, None)
    assert from_json == from_release
    assert all(text.endswith(".") and len(text.split()) >= 2 for text in from_json)


def test_missing_transcripts_name_the_stem(fresh_iemocap: Path) -> None:
    utterances = index_iemocap(fresh_iemocap)
    stem = utterances[3].stem
    json_path = fresh_iemocap / "IEMOCAP" / "texts" / f"{stem}.json"
    json_path.unlink()
    with pytest.raises(InputError, match=f"{stem}.*{re.escape(str(json_path))}"):
        load_transcripts(utterances, fresh_iemocap, fresh_iemocap / "IEMOCAP" / "texts")
    json_path.write_text(json.dumps({"text": "wrong key"}))
    with pytest.raises(InputError, match=f"{stem}.*'Utterance'"):
        load_transcripts(utterances, fresh_iemocap, fresh_iemocap / "IEMOCAP" / "texts")

    dialog = utterances[3].wav_path.parent.name
    trans = fresh_iemocap / "IEMOCAP" / f"Session{utterances[3].session}" / "dialog" / "transcriptions" / f"{dialog}.txt"
    lines = trans.read_text().splitlines(keepends=True)
    trans.write_text("".join(line for line in lines if not line.startswith(stem)))
    with pytest.raises(InputError, match=f"{stem}.*{re.escape(str(trans))}"):
        load_transcripts(utterances, fresh_iemocap, None)


def test_unreadable_and_empty_wav_name_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "Ses01F_impro01_F000.wav"
    garbage.write_bytes(b"not a wav file at all" * 10)
    with pytest.raises(InputError, match=re.escape(str(garbage))):
        read_waveform(garbage)
    with pytest.raises(InputError, match="absent.wav"):
        read_waveform(tmp_path / "absent.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000, subtype="PCM_16")
    with pytest.raises(InputError, match=re.escape(str(empty))):
        read_waveform(empty)


def test_read_waveform_resamples_with_one_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(audio, "_announced_rates", set())
    path = tmp_path / "8k.wav"
    t = np.arange(4000) / 8000
    sf.write(path, 0.5 * np.sin(2 * np.pi * 300 * t), 8000, subtype="PCM_16")
    wave = read_waveform(path)
    assert wave.dtype == np.float32 and wave.shape == (8000,)
    notice = capsys.readouterr().err
    assert notice.startswith("notice: resampling") and "from 8000 Hz to 16000 Hz" in notice
    assert read_waveform(path, max_seconds=0.1).shape == (1600,)
    assert capsys.readouterr().err == ""


def test_read_waveform_mono_and_truncation(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "stereo.wav"
    left = np.linspace(-0.5, 0.5, 16000)
    sf.write(path, np.stack([left, np.full_like(left, 0.25)], axis=1), 16000, subtype="PCM_16")
    wave = read_waveform(path)
    np.testing.assert_allclose(wave, (left + 0.25) / 2, atol=1e-4)
    assert read_waveform(path, max_seconds=0.25).shape == (4000,)
    assert read_waveform(path, max_seconds=5.0).shape == (16000,)
    assert capsys.readouterr().err == ""


def test_synthetic_audio_is_16k_with_short_clips(iemocap: Path) -> None:
    lengths = [len(read_waveform(u.wav_path)) for u in index_iemocap(iemocap)]
    assert min(lengths) < 3520 and max(lengths) <= 16000
    assert sum(length >= 4800 for length in lengths) > len(lengths) // 2


def test_synthetic_is_deterministic(tmp_path: Path) -> None:
    first = write_synthetic_iemocap(tmp_path / "a", seed=3)
    second = write_synthetic_iemocap(tmp_path / "b", seed=3)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    with pytest.raises(InputError, match="already exists"):
        write_synthetic_iemocap(first)


@pytest.mark.parametrize("shares", [(0.8, 0.1), (0.75, 0.1)])
def test_split_utterances(shares: tuple[float, float]) -> None:
    n = 37
    split = split_utterances(n, shares, np.random.default_rng(1234))
    assert split == split_utterances(n, shares, np.random.default_rng(1234))
    assert split != split_utterances(n, shares, np.random.default_rng(1235))
    assert len(split["train"]) == int(shares[0] * n) and len(split["val"]) == int(shares[1] * n)
    together = split["train"] + split["val"] + split["test"]
    assert sorted(together) == list(range(n))
    assert all(isinstance(i, int) for i in together)


def test_split_by_session(iemocap: Path) -> None:
    utterances = index_iemocap(iemocap)
    split = split_by_session(utterances)
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(len(utterances)))
    assert {utterances[i].session for i in split["train"]} == {1, 2, 3}
    assert {utterances[i].session for i in split["val"]} == {4}
    assert {utterances[i].session for i in split["test"]} == {5}
    with pytest.raises(InputError, match="Session5"):
        split_by_session([u for u in utterances if u.session != 5])


def test_pad_waveforms() -> None:
    waves = [np.ones(5, np.float32), np.full(3, 2.0, np.float32), np.arange(8, dtype=np.float32)]
    values, mask = pad_waveforms(waves, min_length=4)
    assert values.shape == mask.shape == (3, 8)
    assert mask.sum(dim=1).tolist() == [5, 3, 8]
    assert values[1].tolist() == [2, 2, 2, 0, 0, 0, 0, 0]
    short_values, short_mask = pad_waveforms(waves[:2], min_length=12)
    assert short_values.shape == (2, 12) and short_mask.sum().item() == 8
    assert str(values.dtype) == "torch.float32" and str(mask.dtype) == "torch.int64"


def test_normalize_waveform() -> None:
    x = np.random.default_rng(0).normal(3.0, 0.2, 1000).astype(np.float32)
    y = normalize_waveform(x)
    assert y.dtype == np.float32
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.std()) - 1) < 1e-3
    assert np.all(normalize_waveform(np.zeros(10)) == 0)


def test_prepare_cli(iemocap: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "texts"
    assert prepare_main(["--audio_dir", str(iemocap), "--text_dir", str(out)]) == 0
    utterances = index_iemocap(iemocap)
    assert f"wrote {len(utterances)} transcripts" in capsys.readouterr().out
    assert len(list(out.glob("*.json"))) == len(utterances)
    assert load_transcripts(utterances, iemocap, out) == load_transcripts(utterances, iemocap, None)

    assert prepare_main(["--audio_dir", str(tmp_path / "missing"), "--text_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("prepare_iemocap: error: IEMOCAP folder not found")


def test_very_short_utterances_do_not_crash_time_masking(iemocap, tiny_models, tmp_path, capsys):
    # 0.03 s = 480 samples: fewer than the tiny student's time-masking minimum, so the collate pads.
    code, _, err = run_in_process("IEMOCAP_T2A.py", [
        "--audio_dir", str(iemocap), "--max_audio_seconds", "0.03", "--lam", "0", "--student_path",
        tiny_models["wav2vec2"], "--epochs", "1", "--n_times", "1", "--classes", "4", "--split", "session",
        "--warmup_epochs", "0", "--output_dir", str(tmp_path)], capsys)
    assert code == 0, err[-2000:]
    assert len(results_in(tmp_path)["trials"][0]["test"]["confusion"]) == 4
