"""torchrun with 2 CPU processes (gloo) gives the run of 1 process: same split, initial weights, batch order and
partner draws, per-sample metrics over the whole split, one run folder, a teacher cache built in halves; bad input
on one process ends both with exit 2."""

import csv
import io
import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, BertTokenizer

import AVMNIST_A2V
import IEMOCAP_A2T
import IEMOCAP_T2A
from datasets.iemocap import index_iemocap
from models.pretrained import minilm_folder
from models.text import BertTextStudent
from models.tiny import TINY_BERT
from tests.helpers import REPO, build_trial, last_line
from utils import processes
from utils.loop import run_epoch


def torchrun(script, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           script, *args, "--no_progress"], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def the_run(output_dir):
    (args,) = output_dir.rglob("args.json")
    return args.parent


def rows(run):
    return list(csv.DictReader(open(run / "trial0" / "metrics.csv")))


def relative(a, b):
    return abs(float(a) - float(b)) / max(abs(float(a)), 1e-12)


def within_samples(a, b, n, samples):
    """Two accuracies over `n` samples that differ by at most `samples` predictions."""
    return round(abs(float(a) - float(b)) * n) <= samples


@pytest.fixture(scope="module")
def deterministic_bert(tmp_path_factory):
    """A tiny BERT without dropout: a student whose training draws no random numbers, so that processes
    (which draw their own) cannot differ there."""
    folder = tmp_path_factory.mktemp("bert_without_dropout")
    tokenizer = BertTokenizer.from_pretrained(minilm_folder())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        **TINY_BERT)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_two_processes_train_a_layernorm_student_as_one(iemocap, tiny_models, deterministic_bert, tmp_path):
    argv = ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--teacher_path",
            tiny_models["wav2vec2"], "--student_path", deterministic_bert, "--epochs", "3", "--n_times", "1",
            "--batch_size", "8", "--learning_rate", "3e-3", "--warmup_epochs", "0"]
    assert IEMOCAP_A2T.main([*argv, "--no_progress", "--output_dir", str(tmp_path / "one"),
                             "--cache_dir", str(tmp_path / "cache_one")]) == 0
    process = torchrun("IEMOCAP_A2T.py", *argv, "--output_dir", str(tmp_path / "two"),
                       "--cache_dir", str(tmp_path / "cache_two"))
    assert process.returncode == 0, process.stderr[-3000:]
    one, two = the_run(tmp_path / "one"), the_run(tmp_path / "two")
    assert process.stdout.count("Run folder: ") == 1  # one process prints; one folder
    # Sums over shares differ from a single process's in the last bits (measured: 1e-7 relative in the losses),
    # so losses agree to 1e-5, and a prediction whose margin is that small may flip: accuracies may differ by
    # one sample of a split.
    sizes = {name: len(split) for name, split in json.loads((one / "trial0" / "split.json").read_text()).items()
             if name in ("train", "val", "test")}
    for a, b in zip(rows(one), rows(two), strict=True):
        for column in ("train_cls", "train_latent", "val_cls", "val_latent"):
            assert relative(a[column], b[column]) < 1e-5, (a["epoch"], column)
        assert within_samples(a["train_acc"], b["train_acc"], sizes["train"], 1)
        assert within_samples(a["val_acc"], b["val_acc"], sizes["val"], 1)
    first, second = (json.loads((run / "results.json").read_text())["trials"][0] for run in (one, two))
    assert within_samples(first["test"]["acc"], second["test"]["acc"], sizes["test"], 1)
    confusion_one, confusion_two = np.array(first["test"]["confusion"]), np.array(second["test"]["confusion"])
    assert confusion_one.sum() == confusion_two.sum() == sizes["test"]  # every test sample counted once
    assert np.abs(confusion_one - confusion_two).sum() <= 2  # a flipped sample moves one count
    assert (one / "trial0" / "split.json").read_text() == (two / "trial0" / "split.json").read_text()
    recorded = json.loads((two / "args.json").read_text())["processes"]
    assert recorded["world_size"] == 2 and recorded["backend"] == "gloo"
    # best.pt is the plain student's state_dict.
    BertTextStudent(32, 6, deterministic_bert).load_state_dict(torch.load(two / "trial0" / "best.pt",
                                                                          weights_only=True))
    # The teacher cache: built in two halves, equal to one process's.
    shares = re.search(r"teacher features: (\d+) computed in [\d.]+ s \((\d+) \+ (\d+) by 2 processes\)",
                       process.stderr)
    total, half, other = map(int, shares.groups())
    assert half + other == total and abs(half - other) <= 1
    (cache_one,), (cache_two,) = (sorted((tmp_path / name).glob("*.safetensors")) for name in ("cache_one", "cache_two"))
    single, double = load_file(str(cache_one)), load_file(str(cache_two))
    order_one, order_two = single["keys"].argsort(), double["keys"].argsort()
    assert torch.equal(single["keys"][order_one], double["keys"][order_two])
    assert torch.allclose(single["features"][order_one], double["features"][order_two], atol=1e-5)


def test_two_processes_with_synchronised_batchnorm(avmnist, tiny_models, tmp_path):
    # BatchNorm sees the global batch (our gloo version of SyncBatchNorm). What the processes share is identical
    # (split, batch order, partners); the sums of a share of 8 differ from those of a batch of 16 in the last bits
    # (3e-7 after the first convolutions, measured), which a ResNet amplifies: 5e-6 relative in the first
    # epoch's training loss, up to 1.4e-3 in validation losses after the precise BatchNorm pass and 1.6e-2 in the
    # second epoch (measured on this data). Hence: 1e-4 in the first training epoch, 5e-2 after it; and, as
    # amplified rounding flips a prediction now and then (one test sample of 32 on one machine of this kind),
    # accuracies within two samples of each split.
    argv = ["--data_root", str(avmnist), "--teacher_path", tiny_models["wav2vec2"], "--epochs", "2", "--n_times",
            "1", "--batch_size", "16", "--subset", "32"]
    assert AVMNIST_A2V.main([*argv, "--no_progress", "--output_dir", str(tmp_path / "one")]) == 0
    process = torchrun("AVMNIST_A2V.py", *argv, "--output_dir", str(tmp_path / "two"))
    assert process.returncode == 0, process.stderr[-3000:]
    one, two = the_run(tmp_path / "one"), the_run(tmp_path / "two")
    sizes = {name: len(split) for name, split in json.loads((one / "trial0" / "split.json").read_text()).items()
             if name in ("train", "val", "test")}
    for a, b in zip(rows(one), rows(two), strict=True):
        for column in ("train_cls", "train_latent", "val_cls", "val_latent"):
            assert relative(a[column], b[column]) < (1e-4 if a["epoch"] == "1" and "train" in column else 5e-2)
        assert within_samples(a["train_acc"], b["train_acc"], sizes["train"], 2)
        assert within_samples(a["val_acc"], b["val_acc"], sizes["val"], 2)
    first, second = (json.loads((run / "results.json").read_text())["trials"][0] for run in (one, two))
    assert within_samples(first["test"]["acc"], second["test"]["acc"], sizes["test"], 2)


def test_each_process_pads_its_share_of_a_batch_as_the_whole_batch(iemocap, tiny_models, tmp_path, monkeypatch):
    # The tiny wav2vec2 student normalises its first conv layer over the whole padded input (group norm, as
    # wav2vec2-base), so a share padded to its own longest utterance would get other outputs than in one process.
    trial = build_trial(IEMOCAP_T2A, ["--audio_dir", str(iemocap), "--student_path", tiny_models["wav2vec2"],
                                      "--lam", "0", "--batch_size", "8"], tmp_path)
    whole = run_epoch(trial, "test", "the test")
    sizes = [len(batch.labels) for batch in trial.loaders["test"]]
    assert len(set(sizes)) > 1 or sizes[0] > 1
    shares = []
    for this_rank in (0, 1):
        monkeypatch.setattr(processes, "world_size", lambda: 2)
        monkeypatch.setattr(processes, "rank", lambda: this_rank)
        count = sum(len(range(n)[processes.share(n)]) for n in sizes)
        shares.append((count, run_epoch(trial, "test", "the test")))
    assert sum(count for count, _ in shares) == sum(sizes)
    combined = sum(count * result["cls_loss"] for count, result in shares) / sum(sizes)
    assert relative(whole["cls_loss"], combined) < 1e-5  # float sums in another order; padding alone is ~1e-2
    assert whole["acc"] == pytest.approx(sum(count * result["acc"] for count, result in shares) / sum(sizes))


def test_bad_input_on_one_process_ends_both_with_exit_2(fresh_iemocap, tiny_models, deterministic_bert, tmp_path):
    # The last utterance's audio is unreadable beyond its header: only the second process, whose share of the
    # teacher features it is in, reads it, while the first waits for it in a collective.
    buffer = io.BytesIO()
    soundfile.write(buffer, np.random.default_rng(0).uniform(-0.5, 0.5, 16000), 16000, format="FLAC")
    index_iemocap(fresh_iemocap)[-1].wav_path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    start = time.monotonic()
    process = torchrun("IEMOCAP_A2T.py", "--audio_dir", str(fresh_iemocap), "--teacher_path",
                       tiny_models["wav2vec2"], "--student_path", deterministic_bert, "--epochs", "1",
                       "--output_dir", str(tmp_path), timeout=120)
    assert time.monotonic() - start < 60
    errors = [line for line in process.stderr.splitlines() if line.startswith("IEMOCAP_A2T.py: error: cannot read")]
    assert len(errors) == 2 and "found by process 1" in errors[1]
    assert re.findall(r"^\s+exitcode\s+: (-?\d+)", process.stderr, re.M) == ["2", "2"]  # torchrun's report


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused(avmnist, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "4")  # as torchrun says it to each process, which reads its options
    with pytest.raises(SystemExit) as exit_info:
        AVMNIST_A2V.parse_args(["--data_root", str(avmnist), "--batch_size", "30"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--batch_size 30 is the global batch and must divide among the 4 processes" in last_line(err)
