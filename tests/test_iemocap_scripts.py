"""The two IEMOCAP scripts run as the README commands, on a synthetic IEMOCAP tree with tiny models."""

import json
import shutil

import pytest

from tests.helpers import last_line, results_of, run_folder, run_in_process, run_script, results_in

README_IEMOCAP = ["--epochs", "30", "--learning_rate", "5e-5", "--batch_size", "4", "--optim", "adam", "--lam", "0.3",
                  "--n_times", "3", "--random_seed", "1234"]
# Tiny random models need a larger step and a few epochs; the original warm-up would spend them at lr 0.
TINY_BUDGET = ["--epochs", "6", "--learning_rate", "3e-3", "--batch_size", "8", "--warmup_epochs", "0"]


def numbers(results):
    return [(t["seed"], t["best_epoch"], t["val"], t["test"]) for t in results["trials"]]


@pytest.fixture(scope="module")
def t2a_runs(iemocap, tiny_models, tmp_path_factory):
    audio_dir, text_dir = str(iemocap), str(iemocap / "IEMOCAP" / "texts")
    args = [*README_IEMOCAP, "--audio_dir", audio_dir, "--text_dir", text_dir, "--language_model", "bert",
            "--teacher_path", tiny_models["bert"], "--student_path", tiny_models["wav2vec2"], *TINY_BUDGET,
            "--n_times", "1", "--output_dir", str(tmp_path_factory.mktemp("runs"))]
    return run_script("IEMOCAP_T2A.py", *args), run_script("IEMOCAP_T2A.py", *args)


def test_t2a_readme_command_learns_and_reports_iemocap_metrics(t2a_runs):
    results = results_of(t2a_runs[0])
    assert t2a_runs[0].stdout.splitlines()[-1].endswith(" IEMOCAP T->A")
    test = results["trials"][0]["test"]
    assert set(test) == {"acc", "cls_loss", "latent_loss", "uar", "macro_f1", "confusion"}
    assert len(test["confusion"]) == 6 and all(len(row) == 6 for row in test["confusion"])
    assert results["teacher"]["name"] == "bert" and results["teacher"]["dim"] == 32
    assert test["acc"] > 0.4  # chance is 1/6


def test_t2a_same_seed_same_numbers(t2a_runs):
    assert numbers(results_of(t2a_runs[0])) == numbers(results_of(t2a_runs[1]))


def test_t2a_split_records_stems_and_labels(t2a_runs):
    split = json.loads((run_folder(t2a_runs[0]) / "trial0" / "split.json").read_text())
    sizes = [len(split[k]) for k in ("train", "val", "test")]
    assert sizes == [96, 12, 12]  # 80/10/10 of 120 utterances
    stem, label = split["train"][0]
    assert stem.startswith("Ses0") and 0 <= label < 6


def test_a2t_readme_command_learns_and_trials_differ(iemocap, tiny_models, tmp_path):
    audio_dir, text_dir = str(iemocap), str(iemocap / "IEMOCAP" / "texts")
    process = run_script("IEMOCAP_A2T.py", *README_IEMOCAP, "--audio_dir", audio_dir, "--text_dir", text_dir,
                         "--mj_model", "base", "--teacher_path", tiny_models["wav2vec2"], "--student_path",
                         tiny_models["bert"], *TINY_BUDGET, "--n_times", "2", "--output_dir", str(tmp_path))
    results = results_of(process)
    assert process.stdout.splitlines()[-1].endswith(" IEMOCAP A->T")
    assert results["teacher"]["name"] == "wav2vec2-base"
    assert results["summary"]["test_acc_mean"] > 0.4
    assert results["trials"][0]["test"] != results["trials"][1]["test"]
    split = json.loads((run_folder(process) / "trial0" / "split.json").read_text())
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


def broken_tree(tmp_path, iemocap, breakage):
    root = tmp_path / "broken"
    shutil.copytree(iemocap, root)
    breakage(root / "IEMOCAP")
    return str(root)


@pytest.mark.parametrize("breakage, message", [
    (lambda tree: shutil.rmtree(tree / "Session3"), "Session3"),
    (lambda tree: (tree / "texts" / "Ses01F_impro01_F000.json").unlink(), "Ses01F_impro01_F000"),
    (lambda tree: next((tree / "Session2" / "sentences" / "wav").rglob("*.wav")).write_bytes(b"not a wav"),
     "cannot read WAV"),
])
def test_bad_iemocap_input_ends_with_one_line_and_exit_2(tmp_path, iemocap, tiny_models, breakage, message, capsys):
    root = broken_tree(tmp_path, iemocap, breakage)
    code, _, err = run_in_process("IEMOCAP_A2T.py", [
        "--audio_dir", root, "--text_dir", str(tmp_path / "broken/IEMOCAP/texts"), "--teacher_path",
        tiny_models["wav2vec2"], "--student_path", tiny_models["bert"], "--epochs", "1", "--n_times", "1",
        "--output_dir", str(tmp_path)], capsys)
    assert code == 2, err[-2000:]
    assert last_line(err).startswith("IEMOCAP_A2T.py: error: ") and message in last_line(err)


def test_unknown_tokenizer_offline_exits_2(iemocap, tmp_path, capsys):
    code, _, err = run_in_process("IEMOCAP_T2A.py", ["--audio_dir", str(iemocap), "--language_model", "roberta",
                                                     "--teacher_path", "random", "--output_dir", str(tmp_path)], capsys)
    assert code == 2 and last_line(err).startswith("IEMOCAP_T2A.py: error:")
