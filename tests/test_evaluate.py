"""--eval_only RUN_DIR: each trial's best.pt evaluated again on its recorded test split gives the run's own test
numbers exactly (CPU), in a folder of its own; the run's files are not touched."""

import json

import AVMNIST_A2V
import IEMOCAP_A2T
from tests.helpers import last_line, run_in_process


def files_of(folder):
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def eval_only_reproduces_the_test_numbers_and_touches_nothing(script, run, tmp_path, capsys):
    before = files_of(run)
    capsys.readouterr()
    code, out, err = run_in_process(f"{script.SCRIPT}.py", ["--eval_only", str(run), "--output_dir",
                                                            str(tmp_path / "eval")], capsys)
    assert code == 0, err
    assert files_of(run) == before
    (evaluation,) = (tmp_path / "eval").rglob("eval.json")
    evaluated = json.loads(evaluation.read_text())
    recorded = json.loads((run / "results.json").read_text())
    assert [t["test"] for t in evaluated["trials"]] == [t["test"] for t in recorded["trials"]]
    assert evaluated["summary"] == recorded["summary"] and evaluated["evaluated_run"] == str(run)
    logged = (run / "log.txt").read_text().splitlines()
    assert [line for line in out.splitlines() if line.startswith(("Test", "Overall"))] == \
        [line for line in logged if line.startswith(("Test", "Overall"))]


def test_eval_only_of_a_resnet_student_uses_the_precise_statistics_saved_with_it(a2v_reference, tmp_path, capsys):
    _, run = a2v_reference
    eval_only_reproduces_the_test_numbers_and_touches_nothing(AVMNIST_A2V, run, tmp_path, capsys)


def test_eval_only_of_a_text_student(iemocap, tiny_models, tmp_path, capsys):
    argv = ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--teacher_path",
            tiny_models["wav2vec2"], "--student_path", tiny_models["bert"], "--epochs", "2", "--subset", "24",
            "--batch_size", "8", "--warmup_epochs", "0"]
    assert IEMOCAP_A2T.main([*argv, "--n_times", "2", "--no_progress", "--output_dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").glob("*/*")
    eval_only_reproduces_the_test_numbers_and_touches_nothing(IEMOCAP_A2T, run, tmp_path, capsys)


def test_eval_only_of_a_run_without_finished_trials_is_refused(avmnist, tmp_path, capsys):
    run = tmp_path / "AVMNIST_A2V" / "20261129-000000_seed42"
    run.mkdir(parents=True)
    args = AVMNIST_A2V.parse_args(["--data_root", str(avmnist), "--lam", "0"])
    (run / "args.json").write_text(json.dumps({name: value for name, value in vars(args).items() if name != "earlier"}))
    (run / "results.json").write_text(json.dumps({"experiment": "AVMNIST A->V", "teacher": None, "trials": [],
                                                  "summary": None, "complete": False, "environment": {}}))
    code, _, err = run_in_process("AVMNIST_A2V.py", ["--eval_only", str(run), "--output_dir", str(tmp_path)], capsys)
    assert code == 2 and "no trial of the run has finished" in last_line(err)
