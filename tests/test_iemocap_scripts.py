"""The two IEMOCAP scripts run as the README commands, on a synthetic IEMOCAP tree with tiny models."""

import json

import pytest

import IEMOCAP_T2A
from tests.helpers import results_in, run_in_process

README_IEMOCAP = ["--epochs", "30", "--learning_rate", "5e-5", "--batch_size", "4", "--optim", "adam", "--lam", "0.3",
                  "--n_times", "3", "--random_seed", "1234"]
# Tiny random models need a larger step and a few epochs; the original warm-up would spend them at lr 0.
TINY_BUDGET = ["--epochs", "6", "--learning_rate", "3e-3", "--batch_size", "8", "--warmup_epochs", "0"]


@pytest.fixture(scope="module")
def t2a_run(iemocap, tiny_models, tmp_path_factory):
    """The README command's run folder (run in this process: tests/test_avmnist_scripts.py starts one as a user)."""
    audio_dir, text_dir = str(iemocap), str(iemocap / "IEMOCAP" / "texts")
    out = tmp_path_factory.mktemp("runs")
    assert IEMOCAP_T2A.main([*README_IEMOCAP, "--audio_dir", audio_dir, "--text_dir", text_dir, "--language_model",
                             "bert", "--teacher_path", tiny_models["bert"], "--student_path", tiny_models["wav2vec2"],
                             *TINY_BUDGET, "--n_times", "1", "--output_dir", str(out), "--no_progress"]) == 0
    (results,) = out.rglob("results.json")
    return results.parent


def test_t2a_readme_command_learns_and_reports_iemocap_metrics(t2a_run):
    results = json.loads((t2a_run / "results.json").read_text())
    assert (t2a_run / "log.txt").read_text().splitlines()[-1].endswith(" IEMOCAP T->A")
    test = results["trials"][0]["test"]
    assert set(test) == {"acc", "cls_loss", "latent_loss", "uar", "macro_f1", "confusion"}
    assert len(test["confusion"]) == 6 and all(len(row) == 6 for row in test["confusion"])
    assert results["teacher"]["name"] == "bert" and results["teacher"]["dim"] == 32
    assert test["acc"] > 0.4  # chance is 1/6


def test_t2a_split_records_stems_and_labels(t2a_run):
    split = json.loads((t2a_run / "trial0" / "split.json").read_text())
    sizes = [len(split[k]) for k in ("train", "val", "test")]
    assert sizes == [96, 12, 12]  # 80/10/10 of 120 utterances
    stem, label = split["train"][0]
    assert stem.startswith("Ses0") and 0 <= label < 6


def test_a2t_readme_command_learns_and_trials_differ(iemocap, tiny_models, tmp_path, capsys):
    audio_dir, text_dir = str(iemocap), str(iemocap / "IEMOCAP" / "texts")
    code, out, err = run_in_process("IEMOCAP_A2T.py", [
        *README_IEMOCAP, "--audio_dir", audio_dir, "--text_dir", text_dir, "--mj_model", "base", "--teacher_path",
        tiny_models["wav2vec2"], "--student_path", tiny_models["bert"], *TINY_BUDGET, "--n_times", "2",
        "--output_dir", str(tmp_path)], capsys)
    assert code == 0, err[-3000:]
    results = results_in(tmp_path)
    assert out.splitlines()[-1].endswith(" IEMOCAP A->T")
    assert results["teacher"]["name"] == "wav2vec2-base"
    assert results["summary"]["test_acc_mean"] > 0.4
    assert results["trials"][0]["test"] != results["trials"][1]["test"]
    (split_file,) = tmp_path.rglob("trial0/split.json")
    split = json.loads(split_file.read_text())
    assert [len(split[k]) for k in ("train", "val", "test")] == [90, 12, 18]  # 75/10/15


def test_very_short_utterances_do_not_crash_time_masking(iemocap, tiny_models, tmp_path, capsys):
    audio_dir = str(iemocap)
    # 0.03 s = 480 samples: fewer than the tiny student's time-masking minimum, so the collate pads.
    code, _, err = run_in_process("IEMOCAP_T2A.py", [
        "--audio_dir", audio_dir, "--max_audio_seconds", "0.03", "--lam", "0", "--student_path",
        tiny_models["wav2vec2"], "--epochs", "1", "--n_times", "1", "--classes", "4", "--split", "session",
        "--warmup_epochs", "0", "--output_dir", str(tmp_path)], capsys)
    assert code == 0, err[-2000:]
    assert len(results_in(tmp_path)["trials"][0]["test"]["confusion"]) == 4
