"""utils.report on fabricated run folders with known numbers (no training, no network)."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from utils.report import main
from utils.run_files import summarise

REPO_ROOT = Path(__file__).resolve().parents[1]

# lam 0 and lam 0.3 on seeds 1, 2, 3: paired differences 0.02, 0.04, 0.03.
# lam 0.7 on the same seeds: differences 0.00, -0.02, +0.05 (one tie, one loss, one win).
BASELINE = {1: 0.50, 2: 0.60, 3: 0.55}
LAM_03 = {1: 0.52, 2: 0.64, 3: 0.58}
LAM_07 = {1: 0.50, 2: 0.58, 3: 0.60}
HEADER = "epoch,lr,train_cls,train_latent,train_acc,val_cls,val_latent,val_acc,train_seconds,epoch_seconds\n"


def metrics_row(epoch, acc=0.45, latent="0.9"):
    return f"{epoch},5e-05,1.5,{latent},0.4,1.6,{latent},{acc},1.0,1.1\n"


def write_run(root, name, lam, accs, n_times=None, script="IEMOCAP_A2T", experiment="IEMOCAP A->T",
              results=True, epochs=2, **options):
    """A run folder like the scripts write: args.json, results.json, trialK/metrics.csv. `results`: True for the
    whole results.json, a dict of fields that replace its own, a string for the file's text, None for no file."""
    folder = root / script / name
    folder.mkdir(parents=True)
    seeds = sorted(accs)
    n_times = n_times or len(seeds)
    args = {"lam": lam, "random_seed": seeds[0] if seeds else 1, "n_times": n_times, "epochs": epochs,
            "learning_rate": 5e-5, "batch_size": 4, "mj_model": "base", "output_dir": str(root / name),
            "script": script, "argv": [f"{script}.py"], "git_commit": "abc", **options}
    (folder / "args.json").write_text(json.dumps(args))
    trials = []
    for k, seed in enumerate(seeds):
        acc = accs[seed]
        test = {"acc": acc, "cls_loss": 1.5, "latent_loss": 0.9 if lam else None, "uar": max(acc - 0.1, 0),
                "macro_f1": max(acc - 0.2, 0), "confusion": [[1, 0], [0, 1]]}
        trials.append({"trial": k, "seed": seed, "best_epoch": 1 + k % epochs, "val": test, "test": test,
                       "checkpoint": str(folder / f"trial{k}" / "best.pt")})
        latent = "0.9" if lam else ""  # empty without a teacher, as the scripts write it
        (folder / f"trial{k}").mkdir()
        (folder / f"trial{k}" / "metrics.csv").write_text(
            HEADER + "".join(metrics_row(epoch, acc, latent) for epoch in range(1, epochs + 1)))
    if results is not None and not isinstance(results, str):
        record = {"experiment": experiment, "teacher": None, "trials": trials,
                  "summary": summarise(trials) if trials else None, "complete": len(trials) == n_times,
                  "environment": {"torch": "2.11.0", "transformers": "5.24.0", "device": "cpu"}}
        results = json.dumps({**record, **(results if isinstance(results, dict) else {})})
    if results is not None:
        (folder / "results.json").write_text(results)
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
    write_run(runs, "g_incomplete_flag", 0.3, {5: 0.01}, results={"complete": False})
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
    assert "'complete' is false with 1 of 1 trials" in reasons["g_incomplete_flag"]
    assert reasons["h_broken"].startswith("cannot read") and "results.json (JSONDecodeError)" in reasons["h_broken"]
    assert "results.json (FileNotFoundError)" in reasons["i_no_results"]
    assert all(seed < 4 for group in report["groups"] for seed in group["seeds"])
    assert "f_unfinished: 1 of 3 trials finished" in out.split("## Unfinished or broken runs")[1]


DELETE = object()
DEEP = "[" * 100_000 + "]" * 100_000
ROWS = HEADER + metrics_row(1) + metrics_row(2)
# A damaged copy of a valid run: (file, key path, value) edits, () the whole file; what the reason must say.
DAMAGED = {
    "args not an object": ([("args.json", (), "[1, 2]")], "args.json is [1, 2]; expected an object"),
    "args nested deep": ([("args.json", (), '{"lam": 0.3, "argv": ' + DEEP + "}")], "args.json (RecursionError)"),
    "lam a string": ([("args.json", ("lam",), "abc")], "args.json lam is 'abc'; expected a number from 0 to 1"),
    "lam above 1": ([("args.json", ("lam",), 1.5)], "args.json lam is 1.5"),
    "lam NaN": ([("args.json", ("lam",), math.nan)], "args.json (NaN is not strict JSON)"),
    "lam missing": ([("args.json", ("lam",), DELETE)], "args.json has no lam"),
    "n_times a string": ([("args.json", ("n_times",), "2")], "args.json n_times is '2'; expected an integer >= 1"),
    "n_times 0": ([("args.json", ("n_times",), 0)], "args.json n_times is 0"),
    "n_times a bool": ([("args.json", ("n_times",), True)], "args.json n_times is True"),
    "n_times below the trials": ([("args.json", ("n_times",), 1)], "'trials' is not a list of at most 1 trials"),
    "epochs a float": ([("args.json", ("epochs",), 2.0)], "args.json epochs is 2.0; expected an integer >= 1"),
    "random_seed a string": ([("args.json", ("random_seed",), "4")], "args.json random_seed is '4'"),
    "script a path": ([("args.json", ("script",), "../../x")], "args.json script is '../../x'"),
    "script a number": ([("args.json", ("script",), 7)], "args.json script is 7; expected a script name"),
    "option a list": ([("args.json", ("learning_rate",), [5e-5])], "args.json learning_rate is [5e-05]"),
    "option an object": ([("args.json", ("mj_model",), {"name": "base"})], "args.json mj_model is {'name': 'base'}"),
    "option infinite": ([("args.json", ("learning_rate",), math.inf)], "args.json (Infinity is not strict JSON)"),
    "option two lines": ([("args.json", ("mj_model",), "base\n| x |")], "args.json mj_model is 'base\\n| x |'"),
    "results not an object": ([("results.json", (), "[]")], "results.json is []; expected an object"),
    "results nested deep": ([("results.json", (), DEEP)], "results.json (RecursionError)"),
    "results a huge integer": ([("results.json", (), "9" * 5000)], "results.json (ValueError)"),
    "results not UTF-8": ([("results.json", (), b"\xff\xfe{")], "results.json (UnicodeDecodeError)"),
    "experiment a number": ([("results.json", ("experiment",), 3)], "results.json experiment is 3"),
    "trials an object": ([("results.json", ("trials",), {})], "'trials' is not a list of at most 2 trials"),
    "summary a list": ([("results.json", ("summary",), [])], "'summary' is not an object (or null)"),
    "complete a string": ([("results.json", ("complete",), "yes")], "'complete' not true or false"),
    "trial not an object": ([("results.json", ("trials", 0), 5)], "trial 0 is not the record of trial 0 with seed 4"),
    "trial a string": ([("results.json", ("trials", 0, "trial"), "0")],
                       "trial 0 is not the record of trial 0 with seed 4"),
    "trial out of place": ([("results.json", ("trials", 1, "trial"), 0)],
                           "trial 1 is not the record of trial 1 with seed 5"),
    "seed a float": ([("results.json", ("trials", 0, "seed"), 4.0)],
                     "trial 0 is not the record of trial 0 with seed 4"),
    "seed missing": ([("results.json", ("trials", 0, "seed"), DELETE)],
                     "trial 0 is not the record of trial 0 with seed 4"),
    "seed repeated": ([("results.json", ("trials", 1, "seed"), 4)], "trial 1 is not the record of trial 1 with seed 5"),
    "best_epoch 0": ([("results.json", ("trials", 0, "best_epoch"), 0)], "trial 0 has no best epoch in 1..2"),
    "best_epoch past epochs": ([("results.json", ("trials", 0, "best_epoch"), 3)], "trial 0 has no best epoch in 1..2"),
    "best_epoch a string": ([("results.json", ("trials", 0, "best_epoch"), "1")], "trial 0 has no best epoch in 1..2"),
    "test missing": ([("results.json", ("trials", 0, "test"), DELETE)],
                     "trial 0's fields are best_epoch, checkpoint, seed, trial, val"),
    "acc a string": ([("results.json", ("trials", 0, "test", "acc"), "0.9")],
                     "trial 0's test metrics: acc is not a fraction in [0, 1]"),
    "acc in percent": ([("results.json", ("trials", 0, "test", "acc"), 90)],
                       "trial 0's test metrics: acc is not a fraction in [0, 1]"),
    "acc NaN": ([("results.json", ("trials", 0, "test", "acc"), math.nan)], "results.json (NaN is not strict JSON)"),
    "uar null": ([("results.json", ("trials", 1, "test", "uar"), None)],
                 "trial 1's test metrics: uar is not a fraction in [0, 1]"),
    "macro_f1 a bool": ([("results.json", ("trials", 0, "test", "macro_f1"), True)],
                        "trial 0's test metrics: macro_f1 is not a fraction in [0, 1]"),
    "metrics.csv missing": ([("trial1/metrics.csv", (), DELETE)], "no trial1/metrics.csv"),
    "metrics.csv empty": ([("trial0/metrics.csv", (), "")], "trial0/metrics.csv does not start with the header"),
    "metrics.csv header": ([("trial0/metrics.csv", (), ROWS.replace("val_acc", "acc"))], "does not start with"),
    "metrics.csv epochs out of order": ([("trial0/metrics.csv", (), HEADER + metrics_row(2) + metrics_row(1))],
                                        "trial0/metrics.csv row 1 is '2,5e-05,"),
    "metrics.csv a cell short": ([("trial0/metrics.csv", (), ROWS.replace(",1.1\n", "\n", 1))],
                                 "trial0/metrics.csv row 1 is"),
    "metrics.csv a word": ([("trial0/metrics.csv", (), ROWS.replace("1.5", "abc", 1))],
                           "trial0/metrics.csv row 1 train_cls is 'abc'; expected a finite number"),
    "metrics.csv NaN": ([("trial0/metrics.csv", (), ROWS.replace("1.6", "nan", 1))], "row 1 val_cls is 'nan'"),
    "metrics.csv no latent at lam > 0": ([("trial0/metrics.csv", (), HEADER + metrics_row(1, latent="") * 2)],
                                         "trial0/metrics.csv row 1 train_latent is ''"),
    "metrics.csv a field over the limit": ([("trial0/metrics.csv", (), ROWS + "3," + "9" * 200_000 + "\n")],
                                           "unreadable trial0/metrics.csv: field larger than field limit"),
    "metrics.csv an epoch too many": ([("trial0/metrics.csv", (), ROWS + metrics_row(3))],
                                      "trial0 trained 3 epochs (trial0/metrics.csv), the run records 2"),
    "metrics.csv one epoch short": ([("trial1/metrics.csv", (), HEADER + metrics_row(1))],
                                    "trial1 trained 1 epoch (trial1/metrics.csv), the run records 2"),
    "epochs grown on resume": ([("args.json", ("epochs",), 3), ("trial1/metrics.csv", (), ROWS + metrics_row(3))],
                               "trial0 trained 2 epochs (trial0/metrics.csv), the run records 3 (args.json epochs)"),
}


def damage(folder, file, path, value):
    """Set (or DELETE) the value at the key path of a JSON file, or replace (or DELETE) the whole file (path ())."""
    target = folder / file
    if not path and value is DELETE:
        target.unlink()
    elif not path:
        target.write_bytes(value if isinstance(value, bytes) else value.encode())
    else:
        data = json.loads(target.read_text())
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if value is DELETE:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        target.write_text(json.dumps(data))


@pytest.mark.parametrize("edits, reason", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_run_is_listed_with_its_reason_and_left_out(tmp_path, capsys, edits, reason):
    runs = tmp_path / "runs"
    write_run(runs / "intact", "lam0", 0.0, BASELINE)
    write_run(runs / "intact", "lam03", 0.3, LAM_03)
    damaged = write_run(runs, "damaged", 0.3, {4: 0.9, 5: 0.3})  # would change the lam 0.3 group if it counted
    for file, path, value in edits:
        damage(damaged, file, path, value)
    intact, _ = report_json(capsys, tmp_path, runs / "intact")
    report, out = report_json(capsys, tmp_path, runs)
    (skipped,) = report["skipped"]
    assert skipped["run"] == str(damaged.resolve()) and reason in skipped["reason"], skipped["reason"]
    assert "\n" not in skipped["reason"] and f"- {damaged.resolve()}: {skipped['reason']}" in out.splitlines()
    assert {key: report[key] for key in ("distinguishing", "groups", "comparisons", "notes")} == \
        {key: intact[key] for key in ("distinguishing", "groups", "comparisons", "notes")}


def test_runs_that_trained_different_epochs_never_pool(tmp_path, capsys):
    write_run(tmp_path, "lam0_2_epochs", 0.0, BASELINE)
    write_run(tmp_path, "lam03_3_epochs", 0.3, LAM_03, epochs=3)
    write_run(tmp_path, "lam03_2_epochs", 0.3, {4: 0.7})
    report, _ = report_json(capsys, tmp_path, tmp_path)
    assert sorted((g["settings"]["epochs"], g["settings"]["lam"], g["seeds"]) for g in report["groups"]) == \
        [(2, 0.0, [1, 2, 3]), (2, 0.3, [4]), (3, 0.3, [1, 2, 3])]
    assert report["comparisons"] == [] and report["skipped"] == []


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


def test_plots_write_curves_and_the_pictures_of_each_sweep(sweep, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    write_run(sweep, "j_one_epoch_lam0", 0.0, BASELINE, epochs=1)  # a second sweep of the script, of one epoch
    write_run(sweep, "k_one_epoch_lam03", 0.3, LAM_03, epochs=1)
    code, out, err = run_report(capsys, sweep, "--plots", tmp_path / "plots")
    assert code == 0, err
    names = sorted(path.name for path in (tmp_path / "plots").iterdir())
    assert names == ["curves_IEMOCAP_A2T_a_lam0.png", "curves_IEMOCAP_A2T_b_lam03_seeds12.png",
                     "curves_IEMOCAP_A2T_c_lam03_seed3.png", "curves_IEMOCAP_A2T_d_lam03_seed2_again.png",
                     "curves_IEMOCAP_A2T_e_lam07.png", "curves_IEMOCAP_A2T_j_one_epoch_lam0.png",
                     "curves_IEMOCAP_A2T_k_one_epoch_lam03.png", "paired_differences_IEMOCAP_A2T.png",
                     "paired_differences_IEMOCAP_A2T_2.png", "sweep_curves_IEMOCAP_A2T.png",
                     "sweep_curves_IEMOCAP_A2T_2.png"]
    assert all((tmp_path / "plots" / name).read_bytes().startswith(b"\x89PNG") for name in names)
    assert all(name in out.split("## Plots")[1] for name in names)


@pytest.mark.parametrize("problem", ["missing", "empty", "too deep"])
def test_bad_paths_exit_2_with_one_error_line(tmp_path, capsys, problem):
    path = tmp_path / "nothing_here"
    folders = [] if problem == "missing" else [path]
    while problem == "too deep" and len(folders) < 1100:  # deeper than Python's recursion limit
        folders.append(folders[-1] / "d")
    for folder in folders:
        folder.mkdir()
    try:
        code, out, err = run_report(capsys, path)
    finally:
        for folder in reversed(folders):  # removed here: pytest's recursive rmtree would overflow
            folder.rmdir()
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith("report: error: ") and "Traceback" not in err
    assert problem != "too deep" or "nests folders too deep to search" in err


def test_the_report_runs_without_matplotlib_torch_or_the_project_packages(sweep):
    check = ("import sys; from utils.report import main; assert main([sys.argv[1]]) == 0; "
             "loaded = {'matplotlib', 'torch', 'datasets', 'models'} & set(sys.modules); assert not loaded, loaded; "
             "sys.modules['matplotlib'] = None; sys.exit(main([sys.argv[1], '--plots', sys.argv[2]]))")
    process = subprocess.run([sys.executable, "-c", check, str(sweep), str(sweep / "plots")], capture_output=True,
                             text=True, cwd=REPO_ROOT, timeout=60)
    assert process.returncode == 2, process.stderr
    last_line = process.stderr.splitlines()[-1]
    assert last_line == "report: error: --plots needs matplotlib (pip install -r requirements.txt)"


def test_a_real_pair_of_tiny_runs(a2v_reference, tmp_path, capsys):
    import AVMNIST_A2V

    argv, helped = a2v_reference  # lam 0.3, the default
    assert AVMNIST_A2V.main([*argv, "--lam", "0", "--no_progress", "--output_dir", str(tmp_path / "runs")]) == 0
    capsys.readouterr()
    assert main([str(tmp_path / "runs"), str(helped), "--json", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert sorted(group["settings"]["lam"] for group in report["groups"]) == [0.0, 0.3]
    (comparison,) = report["comparisons"]
    accuracy = {}  # (lam, seed) -> test accuracy, as the runs recorded them
    for path in [*(tmp_path / "runs").rglob("results.json"), helped / "results.json"]:
        lam = json.loads((path.parent / "args.json").read_text())["lam"]
        accuracy.update({(lam, t["seed"]): t["test"]["acc"] for t in json.loads(path.read_text())["trials"]})
    assert comparison["seeds"] == [42, 43]
    assert comparison["differences"] == pytest.approx([accuracy[0.3, seed] - accuracy[0.0, seed] for seed in (42, 43)])
