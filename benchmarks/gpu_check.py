"""The checks to run whenever a GPU is lent: one command, under 5 minutes on one GPU, one summary table.

    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py              # --device cuda (default)
    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py --device cpu # a dry run: the same steps on 16 items a split
                                                                 # (fp16 skipped; the teacher-cost table too)

1. The four scripts on synthetic data with the real architectures at random init (teacher and, for
   IEMOCAP, student), 2 epochs, 1 trial each, in fp32, `--amp bf16` and `--amp fp16`: seconds per training
   epoch (the mean of metrics.csv's train_seconds after the first epoch, or of the first when there is one)
   and test accuracy. One process runs them all (the scripts' own `main`), so Python starts once.
2. `torchrun --nproc_per_node 1` (NCCL on CUDA) running IEMOCAP_A2T: it must end with exit 0 and give the
   same test accuracy as the plain run of step 1.
3. `benchmarks/teacher_cost.py --quick` on the device: its own table, printed as it comes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a file, the repository root is not on the path
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import AVMNIST_A2V  # noqa: E402
import AVMNIST_V2A  # noqa: E402
import IEMOCAP_A2T  # noqa: E402
import IEMOCAP_T2A  # noqa: E402
from datasets.tools.synthetic import write_synthetic_avmnist  # noqa: E402
from datasets.tools.synthetic_iemocap import write_synthetic_iemocap  # noqa: E402

EPOCHS = 2


def data_options(script, avmnist: Path, iemocap: Path) -> list[str]:
    """Each script's data and random real-size models (its own options, as its --help lists them)."""
    if script in (AVMNIST_V2A, AVMNIST_A2V):
        return ["--data_root", str(avmnist), "--teacher_path", "random"]
    return ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--teacher_path",
            "random", "--student_path", "random", "--warmup_epochs", "0"]


def finished_run(output_dir: Path) -> tuple[float, float]:
    """Seconds per training epoch (after the first, which also warms up) and the test accuracy of a run."""
    (results,) = output_dir.rglob("results.json")
    seconds = [float(row["train_seconds"]) for row in csv.DictReader(open(results.parent / "trial0" / "metrics.csv"))]
    test = json.loads(results.read_text())["trials"][0]["test"]["acc"]
    return sum(seconds[1:] or seconds) / len(seconds[1:] or seconds), test


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    device = parser.parse_args().device
    started = time.perf_counter()
    rows = [["check", "fp32 s/epoch", "fp32 acc %", "bf16 s/epoch", "bf16 acc %", "fp16 s/epoch", "fp16 acc %"]]
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        avmnist = write_synthetic_avmnist(work / "avmnist", n_train=600, n_test=200)
        iemocap = write_synthetic_iemocap(work / "iemocap", per_class=20)
        plain_a2t_accuracy = None
        for script in (AVMNIST_V2A, AVMNIST_A2V, IEMOCAP_T2A, IEMOCAP_A2T):
            row = [script.SCRIPT]
            for amp in ("none", "bf16", "fp16"):
                if amp == "fp16" and device != "cuda":
                    row += ["-", "-"]
                    continue
                out = work / "runs" / f"{script.SCRIPT}_{amp}"
                dry_run = ["--subset", "16"] if device == "cpu" else []
                argv = [*data_options(script, avmnist, iemocap), *dry_run, "--epochs", str(EPOCHS), "--n_times", "1",
                        "--amp", amp, "--device", device, "--no_progress", "--output_dir", str(out)]
                print(f"[{time.perf_counter() - started:4.0f} s] {script.SCRIPT} --amp {amp}", file=sys.stderr)
                with contextlib.redirect_stdout(io.StringIO()):
                    code = script.main(argv)
                if code != 0:
                    row += [f"exit {code}", "-"]
                    continue
                seconds, accuracy = finished_run(out)
                row += [f"{seconds:.2f}", f"{100 * accuracy:.2f}"]
                if script is IEMOCAP_A2T and amp == "none":
                    plain_a2t_accuracy, plain_argv = accuracy, argv
            rows.append(row)

        print(f"[{time.perf_counter() - started:4.0f} s] torchrun IEMOCAP_A2T", file=sys.stderr)
        out = work / "runs" / "torchrun"
        launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                   "1", "IEMOCAP_A2T.py", *plain_argv[:-1], str(out)], cwd=REPO, capture_output=True,
                                  text=True)
        if launched.returncode == 0:
            seconds, accuracy = finished_run(out)
            backend = json.loads(next(out.rglob("args.json")).read_text())["processes"]["backend"]
            same = "same test acc as the plain run" if accuracy == plain_a2t_accuracy else "TEST ACC DIFFERS"
            rows.append([f"torchrun x1, {backend}", f"{seconds:.2f}", f"{100 * accuracy:.2f}", same, "", "", ""])
        else:
            rows.append(["torchrun x1", f"exit {launched.returncode}", launched.stderr.strip().splitlines()[-1],
                         "", "", "", ""])

        if device == "cuda":
            print(f"[{time.perf_counter() - started:4.0f} s] benchmarks/teacher_cost.py --quick", file=sys.stderr)
            cost = subprocess.run([sys.executable, str(REPO / "benchmarks" / "teacher_cost.py"), "--quick",
                                   "--device", device], cwd=REPO)
            rows.append(["teacher_cost.py --quick", f"exit {cost.returncode}", "(its table above)", "", "", "", ""])
    print("\n== GPU check: the four scripts (2 epochs, synthetic data, real architectures at random init) ==")
    print(table(rows))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
