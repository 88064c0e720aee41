"""What torchrun's processes compute, checked in one process (tests/test_paths.py runs the scripts under torchrun):
each process pads its share of a batch as the whole batch is padded, so that the shares add up to the batch; a global
batch must divide among the processes."""

import pytest

import AVMNIST_A2V
import IEMOCAP_T2A
from tests.helpers import build_trial, last_line
from utils import distributed
from utils.loop import run_epoch


def relative(a, b):
    return abs(float(a) - float(b)) / max(abs(float(a)), 1e-12)


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
        monkeypatch.setattr(distributed, "world_size", lambda: 2)
        monkeypatch.setattr(distributed, "rank", lambda: this_rank)
        count = sum(len(range(n)[distributed.share(n)]) for n in sizes)
        shares.append((count, run_epoch(trial, "test", "the test")))
    assert sum(count for count, _ in shares) == sum(sizes)
    combined = sum(count * result["cls_loss"] for count, result in shares) / sum(sizes)
    assert relative(whole["cls_loss"], combined) < 1e-5  # float sums in another order; padding alone is ~1e-2
    assert whole["acc"] == pytest.approx(sum(count * result["acc"] for count, result in shares) / sum(sizes))


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused(avmnist, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "4")  # as torchrun says it to each process, which reads its options
    with pytest.raises(SystemExit) as exit_info:
        AVMNIST_A2V.parse_args(["--data_root", str(avmnist), "--batch_size", "30"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--batch_size 30 is the global batch and must divide among the 4 processes" in last_line(err)
