"""Bad input, as a table: each case damages a copy of the data or the weights, or gives a bad option
or path, runs a script's main() in this process and expects exit 2 with one last stderr line
`<script>.py: error: ...` naming the problem, no traceback anywhere in stderr, and nothing half-written
in the output folder. Last, one run as a user starts it, where the bad file is only read by a DataLoader worker."""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile
import torch

from datasets.iemocap import index_iemocap
from datasets.tools.synthetic import write_synthetic_avmnist
from tests.helpers import last_line, run_as_user, run_in_process

V2A, A2V, T2A, A2T = "AVMNIST_V2A.py", "AVMNIST_A2V.py", "IEMOCAP_T2A.py", "IEMOCAP_A2T.py"
BUDGET = ["--epochs", "1", "--n_times", "1", "--subset", "8", "--batch_size", "4"]
TRANSCRIPT = "texts/Ses01F_impro01_F000.json"  # of an utterance the IEMOCAP scripts select
WEIGHTS, CONFIG = "model.safetensors", "config.json"  # of the tiny Hugging Face models


class Context:
    """What a case builds its command line from: the shared data and tiny models, private copies on demand."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.request, self.tmp, self.monkeypatch = request, tmp_path, monkeypatch
        self.out = tmp_path / "runs"
        self.models = request.getfixturevalue("tiny_models")

    def argv(self, script: str, data: Path | None = None, weights: bool = True) -> list[str]:
        """The script's command line on `data` (default: the intact shared data), tiny local weights (none:
        the hub's, offline), a budget of seconds."""
        if script.startswith("AVMNIST"):
            data = data or self.request.getfixturevalue("avmnist")
            paths = ["--teacher_path", self.models["resnet18" if script == V2A else "wav2vec2"]]
            return ["--data_root", str(data), *(paths if weights else []), *BUDGET, "--output_dir", str(self.out)]
        data = data or self.request.getfixturevalue("iemocap")
        teacher, student = ("bert", "wav2vec2") if script == T2A else ("wav2vec2", "bert")
        paths = ["--teacher_path", self.models[teacher], "--student_path", self.models[student]]
        return ["--audio_dir", str(data), "--text_dir", str(data / "IEMOCAP" / "texts"), *(paths if weights else []),
                "--warmup_epochs", "0", *BUDGET, "--output_dir", str(self.out)]

    def damaged_data(self, script: str, change: Callable[[Path], object]) -> Path:
        """A private copy of the script's data set (AVMNIST, or the folder holding IEMOCAP/) after `change`."""
        root = self.request.getfixturevalue("fresh_avmnist" if script.startswith("AVMNIST") else "fresh_iemocap")
        change(root if script.startswith("AVMNIST") else root / "IEMOCAP")
        return root

    def damaged_model(self, name: str, change: Callable[[Path], object]) -> str:
        """A private copy of a tiny model (folder or .pth) after `change`."""
        source = Path(self.models[name])
        copy = self.tmp / "models" / source.name
        copy.parent.mkdir(exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy)
        change(copy)
        return str(copy)

    def file(self, name: str, content: bytes | str) -> str:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return str(path)

    def read_only(self, folder: Path) -> Path:
        """`folder`, made read-only; root may write anywhere, so os.access then answers as for any other user."""
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        self.request.addfinalizer(lambda: folder.chmod(0o755))
        if os.geteuid() == 0:
            access = os.access
            self.monkeypatch.setattr(os, "access", lambda path, mode, *args, **kwargs: (
                not (Path(path) == folder and mode & os.W_OK) and access(path, mode, *args, **kwargs)))
        return folder

    def utterances(self) -> list[list]:
        """[stem, label] of the shared IEMOCAP's utterances, as a split.json records them."""
        return [[u.stem, u.label] for u in index_iemocap(self.request.getfixturevalue("iemocap"))]


Build = Callable[[Context, str], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    script: str
    build: Build  # the command line; may damage private copies first
    expected: str  # in the last stderr line


def options(*extra: str) -> Build:
    return lambda c, script: [*c.argv(script), *extra]


def data(change: Callable[[Path], object], *extra: str) -> Build:
    return lambda c, script: [*c.argv(script, c.damaged_data(script, change)), *extra]


def model(option: str, name: str, change: Callable[[Path], object]) -> Build:
    return lambda c, script: [*c.argv(script), option, c.damaged_model(name, change)]


def split_file(content: bytes | str | dict | Callable[[list[list]], dict]) -> Build:
    """--split_file with `content`: bytes, text, a record, or a record made from the IEMOCAP [stem, label] pairs."""
    def build(c: Context, script: str) -> list[str]:
        record = content(c.utterances()) if callable(content) else content
        text = json.dumps(record) if isinstance(record, dict) else record
        return [*c.argv(script), "--split_file", c.file("split.json", text)]
    return build


def path_option(option: str, make: Callable[[Context], Path | str]) -> Build:
    return lambda c, script: [*c.argv(script), option, str(make(c))]


# Damage helpers ------------------------------------------------------------------------------------------------

def write_wav(path: Path, samples: np.ndarray, subtype: str = "FLOAT", rate: int = 8000) -> None:
    soundfile.write(path, samples, rate, subtype=subtype)


def with_nan_sample(value: float = np.nan) -> np.ndarray:
    """Samples for a float WAV (PCM cannot hold NaN or inf) with one bad `value`."""
    samples = np.full(4000, 0.1, np.float32)
    samples[100] = value
    return samples


def truncated_flac() -> bytes:
    """A FLAC cut in half, as an interrupted copy leaves it: its header reads, its samples do not."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.random.default_rng(0).uniform(-0.5, 0.5, 16000), 16000, format="FLAC")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def every_wav(tree: Path, content: bytes) -> None:
    for wav in tree.glob("Session*/sentences/wav/*/*.wav"):
        wav.write_bytes(content)


def first_wav(tree: Path) -> Path:
    return sorted(tree.glob("Session1/sentences/wav/*/*.wav"))[0]


def wav_made_folder(tree: Path) -> None:
    wav = first_wav(tree)
    wav.unlink()
    wav.mkdir()


def changed_array(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    np.save(path, change(np.load(path)))


def with_nan(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32)
    array[5].flat[7] = np.nan
    return array


def resnet_without_layer4(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    torch.save({key: value for key, value in state.items() if not key.startswith("layer4.")}, path)


def config_edit(folder: Path, **changes: object) -> None:
    config = json.loads((folder / CONFIG).read_text())
    (folder / CONFIG).write_text(json.dumps({**config, **changes}))


def weights_replaced(folder: Path, name: str, content: bytes) -> None:
    (folder / WEIGHTS).unlink()
    (folder / name).write_bytes(content)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def huge_header(path: Path) -> None:
    """A .npy whose header promises 2**40 spectrograms (np.load would try to allocate 13 PB), over 64 bytes."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (2**40, 112, 112)})
        handle.write(bytes(64))


def npz_archive(path: Path) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, spectrograms=np.zeros((30, 112, 112), np.uint8))


def spectrograms(root: Path) -> Path:
    return root / "spectrogram" / "train_data.npy"


CASES = [
    # Options, checked before any data is loaded.
    Case("seed below 0", V2A, options("--random_seed", "-1"), "expected seeds in 0..4294967295"),
    Case("seed past 2**32 - 1 in trial 2", V2A, options("--random_seed", "4294967295", "--n_times", "2"),
         "trial seeds 4294967295..4294967296"),
    Case("lam outside [0, 1]", A2V, options("--lam", "2"), "a number in [0, 1]"),
    Case("batch of one image", A2V, options("--batch_size", "1", "--lam", "0"), "needs at least 2 per batch"),
    Case("max_audio_seconds keeps nothing", T2A, options("--max_audio_seconds", "0.00001", "--lam", "0"),
         "--max_audio_seconds 1e-05 keeps no sample of"),
    Case("max_audio_seconds beyond any clip", A2T, options("--max_audio_seconds", "1e300"), "seconds in (0, 3600.0]"),
    *[Case(f"{option} {value}", script, options(option, value), f"argument {option}: expected")
      for option, script in (("--learning_rate", V2A), ("--lam", A2V), ("--lr_decay_ratio", A2V),
                             ("--max_audio_seconds", T2A))
      for value in ("inf", "-inf", "nan")],
    # An empty path is an unset shell variable, never the current folder.
    *[Case(f"{option} empty", script, options(option, ""), f"argument {option}: expected a path, got ''")
      for option, script in (("--output_dir", V2A), ("--teacher_path", A2V), ("--cache_dir", A2V),
                             ("--split_file", V2A), ("--demo_dir", V2A), ("--data_root", A2V), ("--audio_dir", T2A),
                             ("--text_dir", A2T), ("--student_path", T2A), ("--resume", A2V), ("--eval_only", A2T))],
    Case("--resume blank", A2V, options("--resume", "  "), "expected a path, got '  '"),
    # Paths, checked before any data is loaded.
    Case("output_dir is a file", V2A, path_option("--output_dir", lambda c: c.file("runs", "x")), "is a file"),
    Case("output_dir below a file", V2A, path_option("--output_dir", lambda c: Path(c.file("f", "x")) / "runs"),
         "is a file; expected a folder"),
    Case("a file where the run folders go", V2A,
         path_option("--output_dir", lambda c: Path(c.file("AVMNIST_V2A", "x")).parent), "AVMNIST_V2A is a file"),
    Case("output_dir not writable", V2A, path_option("--output_dir", lambda c: c.read_only(c.tmp / "locked")),
         "cannot write to"),
    Case("cache_dir is a file", A2V, path_option("--cache_dir", lambda c: c.file("cache", "x")),
         "--cache_dir"),
    Case("cache_dir not writable", A2V, path_option("--cache_dir", lambda c: c.read_only(c.tmp / "cache") / "new"),
         "cannot write to"),
    Case("demo_dir is a file", V2A, lambda c, script: ["--demo", "--demo_dir", c.file("demo", "x"), "--output_dir",
                                                         str(c.out)], "--demo_dir"),
    Case("data_root missing", V2A, path_option("--data_root", lambda c: c.tmp / "nowhere"), "is not a folder"),
    Case("data_root is a file", A2V, path_option("--data_root", lambda c: c.file("avmnist", "x")), "is not a folder"),
    Case("data_root not AVMNIST", V2A, path_option("--data_root", lambda c: c.tmp), "is not an AVMNIST folder"),
    Case("audio_dir missing", T2A, path_option("--audio_dir", lambda c: c.tmp / "nowhere"), "not found"),
    Case("text_dir is a file", A2T, path_option("--text_dir", lambda c: c.file("texts", "x")), "text folder not found"),
    # Split files: read up front; whether the items fit the data, once the data is loaded.
    Case("split file not UTF-8", V2A, split_file(b'\xff\xfe{"train": []}'), "expected the UTF-8 JSON split.json"),
    Case("split file not JSON", A2T, split_file("{train: [1]"), "expected the UTF-8 JSON split.json"),
    Case("split file missing", V2A, lambda c, script: [*c.argv(script), "--split_file", str(c.tmp / "none.json")],
         "cannot read --split_file"),
    Case("split file without lists", V2A, split_file({"train": 3, "val": [1], "test": [2]}), "must hold lists"),
    Case("test split of one item twelve times", V2A, split_file({"train": [0, 1], "val": [2], "test": [3] * 12}),
         "3 appears 12 times in 'test'"),
    Case("train split of one item twice", V2A, split_file({"train": [1, 1], "val": [2], "test": [3]}),
         "1 appears 2 times in 'train'"),
    Case("train and val share an item", A2V, split_file({"train": [0, 1], "val": [1], "test": [3]}),
         "item 1 of the train array appears 2 times in 'train' and 'val'"),
    Case("split index out of range", V2A, split_file({"train": [0, 1], "val": [2], "test": [40]}),
         "holds 40; expected item numbers in 0..39"),
    Case("split index not a number", V2A, split_file({"train": [0, [1, 2]], "val": [2], "test": [3]}),
         "holds [1, 2]; expected item numbers"),
    Case("split index a bool", V2A, split_file({"train": [0, True], "val": [2], "test": [3]}), "holds True"),
    Case("split index past int64", V2A, split_file({"train": [10**30], "val": [2], "test": [3]}),
         "expected item numbers in 0..89"),
    Case("empty val split", V2A, split_file({"train": [0, 1], "val": [], "test": [3]}), "'val' is empty"),
    Case("IEMOCAP split for AVMNIST", V2A, split_file(lambda pairs: {"train": pairs[:2], "val": pairs[2:3],
                                                                     "test": pairs[3:4]}), "expected item numbers"),
    Case("stem in two splits", A2T, split_file(lambda pairs: {"train": pairs[:4], "val": pairs[3:5],
                                                              "test": pairs[6:8]}), "is in more than one split"),
    Case("stem twice in a split", T2A, split_file(lambda pairs: {"train": [pairs[0], pairs[0]], "val": pairs[1:2],
                                                                 "test": pairs[2:3]}), "appears 2 times in 'train'"),
    Case("stem not a string", A2T, split_file(lambda pairs: {"train": [[["x"], 1], *pairs[:2]], "val": pairs[2:3],
                                                             "test": pairs[3:4]}), "is not a [stem, label] pair"),
    Case("split of another --classes", A2T,
         split_file(lambda pairs: {"train": [[stem, (label + 1) % 6] for stem, label in pairs[:2]], "val": pairs[2:3],
                                   "test": pairs[3:4]}), "was the split made with another --classes"),
    # AVMNIST arrays.
    Case("0-byte .npy", V2A, data(lambda root: spectrograms(root).write_bytes(b"")), "cannot read"),
    Case("truncated .npy", V2A, data(lambda root: truncate(spectrograms(root))),
         "but its header promises an array of shape (30, 112, 112) and dtype uint8 (376320 bytes)"),
    Case(".npy header promising terabytes", V2A, data(lambda root: huge_header(spectrograms(root))),
         "holds 64 bytes of data, but its header promises an array of shape (1099511627776, 112, 112)"),
    Case("not an array", A2V, data(lambda root: (root / "image_pca" / "test_data.npy").write_bytes(b"garbage")),
         "cannot read"),
    Case(".npz under a .npy name", V2A, data(lambda root: npz_archive(spectrograms(root))), "is a .npz archive"),
    Case("a single value", V2A, data(lambda root: np.save(spectrograms(root), np.array(3.0))), "holds a single value"),
    Case("object array", V2A, data(lambda root: np.save(root / "train_labels.npy", np.array([{"a": 1}] * 30))),
         "cannot read"),
    Case("missing spectrograms", V2A, data(lambda root: spectrograms(root).unlink()), "missing AVMNIST file"),
    Case("labels out of range", A2V, data(lambda root: np.save(root / "test_labels.npy", np.arange(10) + 3)),
         "expected 0..9"),
    Case("float labels", V2A, data(lambda root: np.save(root / "train_labels.npy", np.zeros(30))),
         "1-D integer labels"),
    Case("lengths disagree", V2A, data(lambda root: np.save(root / "train_labels.npy", np.zeros(29, np.int64))),
         "expected equal lengths"),
    Case("wrong item shape", V2A, data(lambda root: np.save(spectrograms(root), np.zeros((30, 64, 64), np.uint8))),
         "items of shape (64, 64)"),
    Case("float raw images", A2V, data(lambda root: changed_array(root / "image" / "train_data.npy",
                                                                  lambda a: a.astype(np.float32)), "--pca", "false"),
         "has dtype float32; expected uint8"),
    Case("int64 spectrograms", V2A, data(lambda root: changed_array(spectrograms(root), lambda a: a.astype(np.int64))),
         "has dtype int64"),
    Case("NaN in a teacher image", V2A, data(lambda root: changed_array(root / "image_pca" / "train_data.npy",
                                                                        with_nan)), "the first item 5"),
    Case("NaN in a float spectrogram", V2A, data(lambda root: changed_array(spectrograms(root), with_nan)),
         "NaN or inf in 1 item(s), the first item 5"),
    Case("float spectrograms beyond 0..255", V2A,
         data(lambda root: changed_array(spectrograms(root), lambda a: a.astype(np.float32) * 2)),
         "expected values in 0..255"),
    Case("raw images on the MultiBench layout", V2A,
         lambda c, script: [*c.argv(script, c.request.getfixturevalue("multibench")), "--pca", "false"],
         "--pca false needs the raw images"),
    Case("A->V on the MultiBench layout", A2V,
         lambda c, script: c.argv(script, c.request.getfixturevalue("multibench")), "needs the raw WAVs"),
    # WAVs.
    Case("0-sample WAV", A2V, data(lambda root: write_wav(root / "audio/audio_mnist_3.wav", np.zeros(0), "PCM_16")),
         "audio_mnist_3.wav holds no samples"),
    Case("NaN in a teacher WAV", A2V, data(lambda root: write_wav(root / "audio/audio_mnist_4.wav", with_nan_sample())),
         "audio_mnist_4.wav holds non-finite samples"),
    Case("float WAV near the float32 maximum", A2V,
         data(lambda root: write_wav(root / "audio/audio_mnist_5.wav", np.full(4000, 3e38, np.float32))),
         "audio_mnist_5.wav holds samples up to 3e+38"),
    Case("float64 WAV beyond float32", T2A,
         data(lambda tree: write_wav(first_wav(tree), np.full(4000, 1e300), "DOUBLE", rate=16000), "--lam", "0"),
         "F000.wav holds"),
    Case("inf in a student WAV", T2A, data(lambda tree: write_wav(first_wav(tree), with_nan_sample(np.inf), rate=16000),
                                           "--lam", "0"), "F000.wav holds non-finite samples"),
    Case("corrupt WAV", A2V, data(lambda root: (root / "audio/audio_mnist_3.wav").write_bytes(b"RIFF nonsense")),
         "cannot read WAV"),
    Case("missing WAV", A2V, data(lambda root: (root / "audio/audio_mnist_7.wav").unlink()), "audio_mnist_7.wav"),
    Case("WAV that is a folder", A2T, data(wav_made_folder), "F000.wav: Error opening"),
    Case("unreadable WAV read by a DataLoader worker", T2A,
         data(lambda tree: every_wav(tree, truncated_flac()), "--lam", "0", "--num_workers", "1"), "cannot read WAV"),
    # IEMOCAP trees and transcripts.
    Case("session missing", A2T, data(lambda tree: shutil.rmtree(tree / "Session3")), "Session3"),
    Case("transcript missing", A2T, data(lambda tree: (tree / TRANSCRIPT).unlink()), "Ses01F_impro01_F000"),
    Case("transcript not JSON", T2A, data(lambda tree: (tree / TRANSCRIPT).write_text("{")),
         "Ses01F_impro01_F000 unreadable"),
    Case("transcript not UTF-8", A2T, data(lambda tree: (tree / TRANSCRIPT).write_bytes(b'{"Utterance": "\xff"}')),
         "Ses01F_impro01_F000 unreadable"),
    Case("transcript without Utterance", A2T, data(lambda tree: (tree / TRANSCRIPT).write_text('{"Text": "hi"}')),
         "'Utterance'"),
    Case("malformed label line", T2A, data(lambda tree: next(tree.glob("Session2/dialog/EmoEvaluation/*.txt"))
                                           .write_text("[1.0 - 2.0]\tstem only\n")), "malformed line 1"),
    # Weights.
    Case("no weights offline (ImageNet)", V2A, lambda c, script: c.argv(script, weights=False), "IMAGENET1K_V1"),
    Case("no weights offline (hub)", A2V, lambda c, script: c.argv(script, weights=False),
         "facebook/wav2vec2-base-960h"),
    Case("teacher_path missing", V2A, path_option("--teacher_path", lambda c: c.tmp / "resnet18.pth"),
         "does not exist"),
    Case("corrupt .pth", V2A, model("--teacher_path", "resnet18", lambda path: path.write_bytes(b"garbage")),
         "is not a readable state_dict"),
    Case(".pth of another architecture", V2A, model("--teacher_path", "resnet18", resnet_without_layer4),
         "is not a torchvision resnet18 state_dict"),
    Case("unloadable pytorch_model.bin", A2V,
         model("--teacher_path", "wav2vec2", lambda folder: weights_replaced(folder, "pytorch_model.bin", b"garbage")),
         "pytorch_model.bin is not a readable PyTorch checkpoint"),
    Case("empty pytorch_model.bin", A2T,
         model("--teacher_path", "wav2vec2", lambda folder: weights_replaced(folder, "pytorch_model.bin", b"")),
         "pytorch_model.bin is not a readable PyTorch checkpoint"),
    Case("truncated safetensors", T2A, model("--student_path", "wav2vec2", lambda f: truncate(f / WEIGHTS)),
         "--student_path"),
    Case("config without weights", A2V, model("--teacher_path", "wav2vec2", lambda f: (f / WEIGHTS).unlink()),
         "no file named model.safetensors"),
    Case("weights that do not fit the config", A2V,
         model("--teacher_path", "wav2vec2", lambda f: config_edit(f, intermediate_size=48)), "shapes"),
    Case("config.json not JSON", A2V, model("--teacher_path", "wav2vec2", lambda f: (f / CONFIG).write_text("{")),
         "config.json is unreadable"),
    Case("student of another model type", A2T,
         lambda c, script: [*c.argv(script), "--student_path", c.models["wav2vec2"]],
         "holds a 'wav2vec2' model; expected a bert folder"),
    Case("broken tokenizer", T2A, model("--teacher_path", "bert", lambda f: (f / "tokenizer.json").write_text("{")),
         "no usable tokenizer"),
    Case("no tokenizer offline", T2A, options("--language_model", "roberta", "--teacher_path", "random"),
         "roberta tokenizer"),
]


@pytest.fixture(scope="module")
def multibench(tmp_path_factory):
    return write_synthetic_avmnist(tmp_path_factory.mktemp("multibench"), n_train=30, n_test=10, layout="multibench")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_exits_2_with_one_line(case, request, tmp_path, monkeypatch, capsys):
    argv = case.build(Context(request, tmp_path, monkeypatch), case.script)
    code, _, err = run_in_process(case.script, argv, capsys)
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "weights_only" not in err and "allow_pickle" not in err  # never advise loading a file unsafely
    assert last_line(err).startswith(f"{case.script}: error: ") and case.expected in last_line(err), err[-3000:]
    # Loses nothing: whatever the run wrote before it stopped is whole.
    written = list((tmp_path / "runs").rglob("*"))
    assert not [path for path in written if ".tmp" in path.name]
    for path in written:
        if path.suffix == ".json":
            json.loads(path.read_text())


def test_a_worker_error_ends_a_real_run_with_one_line(fresh_iemocap, tiny_models, tmp_path):
    # As a user starts it: only here does stderr hold everything, the DataLoader worker's included.
    every_wav(fresh_iemocap / "IEMOCAP", truncated_flac())
    process = run_as_user(T2A, "--audio_dir", str(fresh_iemocap), "--lam", "0", "--student_path",
                          tiny_models["wav2vec2"], "--num_workers", "1", "--epochs", "1", "--n_times", "1",
                          "--warmup_epochs", "0", "--output_dir", str(tmp_path))
    assert process.returncode == 2, process.stderr[-3000:]
    assert last_line(process.stderr).startswith(f"{T2A}: error: cannot read WAV {fresh_iemocap}")
    assert "Traceback" not in process.stderr
