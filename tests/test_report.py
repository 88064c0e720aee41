"""utils.report on fabricated run folders with known numbers (no training, no network)."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from utils.report import main

REPO_ROOT = Path(__file__).resolve().parents[1]

# lam 0 and lam 0.3 on seeds 1, 2, 3: paired differences 0.02, 0.04, 0.03.
# lam 0.7 on the same seeds: differences 0.00, -0.02, +0.05 (one tie, one loss, one win).
BASELINE = {1: 0.50, 2: 0.60, 3: 0.55}
LAM_03 = {1: 0.52, 2: 0.64, 3: 0.58}
LAM_07 = {1: 0.50, 2: 0.58, 3: 0.60}


def write_run(root, name, lam, accs, n_times=None, script="IEMOCAP_A2T", experiment="IEMOCAP A->T",
              results=True, **options):
    """A run folder like the scripts write: args.json, results.json, trialK/metrics.csv."""
    folder = root / script / name
    folder.mkdir(parents=True)
    seeds = sorted(accs)
    args = {"lam": lam, "random_seed": seeds[0] if seeds else 1, "n_times": n_times or len(seeds), "epochs": 2,
            "learning_rate": 5e-5, "batch_size": 4, "mj_model": "base", "output_dir": str(root / name),
            "script": script, "argv": [f"{script}.py"], "git_commit": "abc", **options}
    (folder / "args.json").write_text(json.dumps(args))
    trials = []
    for k, seed in enumerate(seeds):
        acc = accs[seed]
        trials.append({"trial": k, "seed": seed, "best_epoch": 1 + k % 2,
                       "test": {"acc": acc, "uar": acc - 0.1, "macro_f1": acc - 0.2}})
        (folder / f"trial{k}").mkdir()
        (folder / f"trial{k}" / "metrics.csv").write_text(
            "epoch,lr,train_cls,train_latent,train_acc,val_cls,val_latent,val_acc,train_seconds,epoch_seconds\n"
            f"1,5e-05,1.8,,0.3,1.7,,0.35,1.0,1.1\n2,5e-05,1.5,,0.45,1.6,,{acc},1.0,1.1\n")
    if results is True:
        results = {"experiment": experiment, "teacher": None, "trials": trials}
    if results is not None:
        (folder / "results.json").write_text(results if isinstance(results, str) else json.dumps(results))
    return folder


@pytest.fixture
def sweep(tmp_path):
    """lam 0, 0.3 (split over two runs, plus a duplicate seed) and 0.7, and four runs that must be left out."""
    runs = tmp_path / "runs"
    write_run(runs, "a_lam0", 0.0, BASELINE)
    write_run(runs, "b_lam03_seeds12", 0.3, {1: LAM_03[1], 2: LAM_03[2]})
    write_run(runs, "c_lam03_seed3", 0.3, {3: LAM_03[3]})
    write_run(runs, "d_lam03_seed2_again", 0.3, {2: 0.99})  # a rerun of seed 2: must not count twice
    write_run(runs, "e_lam07", 0.7, LAM_07)
    write_run(runs, "f_unfinished", 0.3, {4: 0.01}, n_times=3)
    write_run(runs, "g_incomplete_flag", 0.3, {5: 0.01}, results={"experiment": "IEMOCAP A->T", "complete": False,
                                                                  "trials": [{"seed": 5, "test": {"acc": 0.01}}]})
    write_run(runs, "h_broken", 0.3, {6: 0.01}, results="{not json")
    write_run(runs, "i_no_results", 0.3, {7: 0.01}, results=None)
    return runs


def run_report(capsys, *argv):
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report_json(capsys, tmp_path, *paths):
    out_file = tmp_path / "report.json"
    code, out, err = run_report(capsys, *paths, "--json", out_file)
    assert code == 0, err
    return json.loads(out_file.read_text()), out


def test_groups_pool_seeds_and_give_mean_and_population_std(sweep, capsys, tmp_path):
    report, out = report_json(capsys, tmp_path, sweep)
    groups = {group["settings"]["lam"]: group for group in report["groups"]}
    assert sorted(groups) == [0.0, 0.3, 0.7]
    assert report["distinguishing"] == ["lam"]  # output_dir and random_seed differ but are ignored
    assert groups[0.3]["seeds"] == [1, 2, 3] and groups[0.3]["n"] == 3
    assert groups[0.3]["test"]["acc"]["values"] == [0.52, 0.64, 0.58]
    # lam 0: mean 0.55, population std sqrt((0.05² + 0.05² + 0²) / 3) = 0.0408
    acc = groups[0.0]["test"]["acc"]
    assert acc["mean"] == pytest.approx(0.55)
    assert acc["std"] == pytest.approx(math.sqrt(2 * 0.05 ** 2 / 3))
    assert groups[0.0]["test"]["uar"]["mean"] == pytest.approx(0.45)
    assert groups[0.0]["best_epochs"] == [1, 2, 1]
    assert "| IEMOCAP A->T | 0.0 | 3 | 1 2 3 | 55.00 ± 4.08 | 45.00 ± 4.08 | 35.00 ± 4.08 | 1, 2, 1 |" in out


def test_a_repeated_seed_counts_once_with_a_note(sweep, capsys, tmp_path):
    report, out = report_json(capsys, tmp_path, sweep)
    lam03 = next(group for group in report["groups"] if group["settings"]["lam"] == 0.3)
    assert 0.99 not in lam03["test"]["acc"]["values"]
    assert len(report["notes"]) == 1 and "seed 2" in report["notes"][0] and "d_lam03_seed2_again" in out


def test_paired_difference_matches_a_hand_computation(sweep, capsys, tmp_path):
    report, out = report_json(capsys, tmp_path, sweep)
    comparison = next(c for c in report["comparisons"] if c["lam"] == 0.3)
    assert comparison["seeds"] == [1, 2, 3]
    assert comparison["differences"] == pytest.approx([0.02, 0.04, 0.03])
    n, mean_d, s_d = 3, 0.03, 0.01  # s_d = sqrt(((-0.01)² + 0.01² + 0²) / (n - 1))
    t = mean_d / (s_d / math.sqrt(n))  # = 3·sqrt(3) = 5.196
    half = 4.302652729911275 * s_d / math.sqrt(n)  # t_{0.975, 2}
    p = 1 - t / math.sqrt(2 + t ** 2)  # two-sided: the t distribution with 2 dof has CDF 1/2 + t / (2 sqrt(2 + t²))
    assert comparison["mean"] == pytest.approx(mean_d)
    assert comparison["t"] == pytest.approx(t)
    assert comparison["p"] == pytest.approx(p)
    assert comparison["ci95"] == pytest.approx([mean_d - half, mean_d + half])
    assert (comparison["wins"], comparison["ties"], comparison["losses"]) == (3, 0, 0)
    assert f"| IEMOCAP A->T | 0.3 | 1 2 3 | +3.00 | [+0.52, +5.48] | 5.196 | {p:.4g} | 3/0/0 |" in out


def test_wins_ties_losses(sweep, capsys, tmp_path):
    report, _ = report_json(capsys, tmp_path, sweep)
    comparison = next(c for c in report["comparisons"] if c["lam"] == 0.7)
    assert comparison["differences"] == pytest.approx([0.0, -0.02, 0.05])
    assert (comparison["wins"], comparison["ties"], comparison["losses"]) == (1, 1, 1)


def test_unfinished_and_broken_runs_are_listed_and_left_out(sweep, capsys, tmp_path):
    report, out = report_json(capsys, tmp_path, sweep)
    reasons = {item["run"].rsplit("/", 1)[1]: item["reason"] for item in report["skipped"]}
    assert reasons["f_unfinished"] == "1 of 3 trials finished"
    assert '"complete": false' in reasons["g_incomplete_flag"]
    assert reasons["h_broken"].startswith("unreadable results.json")
    assert reasons["i_no_results"] == "no results.json"
    assert all(seed < 4 for group in report["groups"] for seed in group["seeds"])
    assert "f_unfinished: 1 of 3 trials finished" in out.split("## Unfinished or broken runs")[1]


def test_one_seed_or_constant_differences_print_na(tmp_path, capsys):
    write_run(tmp_path, "lam0", 0.0, {1: 0.5, 2: 0.6})
    write_run(tmp_path, "lam05", 0.5, {1: 0.6, 2: 0.7})  # both differences 0.1: no variance
    write_run(tmp_path, "lam09", 0.9, {1: 0.7})  # one shared seed
    report, out = report_json(capsys, tmp_path, tmp_path)
    constant, single = sorted(report["comparisons"], key=lambda c: c["lam"])
    assert constant["p"] is None and constant["t"] is None and constant["ci95"] == pytest.approx([0.1, 0.1])
    assert single["p"] is None and single["ci95"] is None and single["mean"] == pytest.approx(0.2)
    assert "| +20.00 | n/a | n/a | n/a | 1/0/0 |" in out and "nan" not in out


def test_options_that_change_the_numbers_split_groups(tmp_path, capsys):
    write_run(tmp_path, "lr_small", 0.3, {1: 0.5})
    write_run(tmp_path, "lr_large", 0.3, {1: 0.6}, learning_rate=1e-3)
    write_run(tmp_path, "avmnist", 0.3, {42: 0.9}, script="AVMNIST_V2A", experiment="AVMNIST V->A")
    report, out = report_json(capsys, tmp_path, tmp_path)
    assert report["distinguishing"] == ["lam", "learning_rate"]
    assert [group["n"] for group in report["groups"]] == [1, 1, 1]
    assert "| AVMNIST V->A | 0.3 | 5e-05 | 1 | 42 | 90.00 ± 0.00 | 80.00 ± 0.00 | 70.00 ± 0.00 | 1 |" in out
    assert report["comparisons"] == []


def test_csv_holds_groups_and_comparisons(sweep, capsys, tmp_path):
    code, _, err = run_report(capsys, sweep, "--csv", tmp_path / "report.csv")
    assert code == 0, err
    with open(tmp_path / "report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["kind"] for row in rows] == ["group"] * 3 + ["comparison"] * 2
    assert float(rows[0]["acc_mean"]) == pytest.approx(0.55) and rows[0]["seeds"] == "1 2 3"
    assert float(rows[3]["diff_mean"]) == pytest.approx(0.03) and rows[3]["lam"] == "0.3"
    assert rows[3]["acc_mean"] == "" and rows[0]["p"] == ""


def test_plots_write_curves_and_a_lam_sweep(sweep, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    code, out, err = run_report(capsys, sweep, "--plots", tmp_path / "plots")
    assert code == 0, err
    names = sorted(path.name for path in (tmp_path / "plots").iterdir())
    assert names == ["curves_IEMOCAP_A2T_a_lam0.png", "curves_IEMOCAP_A2T_b_lam03_seeds12.png",
                     "curves_IEMOCAP_A2T_c_lam03_seed3.png", "curves_IEMOCAP_A2T_d_lam03_seed2_again.png",
                     "curves_IEMOCAP_A2T_e_lam07.png", "lam_sweep_IEMOCAP_A2T.png"]
    assert all((tmp_path / "plots" / name).read_bytes().startswith(b"\x89PNG") for name in names)
    assert "lam_sweep_IEMOCAP_A2T.png" in out.split("## Plots")[1]


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_bad_paths_exit_2_with_one_error_line(tmp_path, capsys, problem):
    path = tmp_path / "nothing_here"
    if problem == "empty":
        path.mkdir()
    code, out, err = run_report(capsys, path)
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith("report: error: ") and "Traceback" not in err


def test_the_report_runs_without_matplotlib_torch_or_the_project_packages(sweep):
    check = ("import sys; from utils.report import main; assert main([sys.argv[1]]) == 0; "
             "loaded = {'matplotlib', 'torch', 'datasets', 'models'} & set(sys.modules); assert not loaded, loaded; "
             "sys.modules['matplotlib'] = None; sys.exit(main([sys.argv[1], '--plots', sys.argv[2]]))")
    process = subprocess.run([sys.executable, "-c", check, str(sweep), str(sweep / "plots")], capture_output=True,
                             text=True, cwd=REPO_ROOT, timeout=60)
    assert process.returncode == 2, process.stderr
    last_line = process.stderr.splitlines()[-1]
    assert last_line == "report: error: --plots needs matplotlib (pip install -r requirements.txt)"


def test_a_real_pair_of_tiny_runs(avmnist, tiny_models, tmp_path, capsys):
    import AVMNIST_A2V

    runs = tmp_path / "runs"
    for lam in ("0", "0.3"):
        assert AVMNIST_A2V.main(["--data_root", str(avmnist), "--teacher_path", tiny_models["wav2vec2"], "--lam", lam,
                                 "--epochs", "1", "--n_times", "2", "--no_progress", "--output_dir", str(runs)]) == 0
    capsys.readouterr()
    assert main([str(runs), "--json", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert sorted(group["settings"]["lam"] for group in report["groups"]) == [0.0, 0.3]
    (comparison,) = report["comparisons"]
    accuracy = {}  # (lam, seed) -> test accuracy, as the runs recorded them
    for path in runs.rglob("results.json"):
        lam = json.loads((path.parent / "args.json").read_text())["lam"]
        accuracy.update({(lam, t["seed"]): t["test"]["acc"] for t in json.loads(path.read_text())["trials"]})
    assert comparison["seeds"] == [42, 43]
    assert comparison["differences"] == pytest.approx([accuracy[0.3, seed] - accuracy[0.0, seed] for seed in (42, 43)])
