"""The checks to run whenever a GPU is lent: one command, unattended, under 5 minutes on one GPU; one table, also
written as JSON (--json PATH).

    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py --json gpu_check.json    # --device cuda (the default)
    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py --device cpu             # a dry run of the same code paths,
                                                                             # tiny sizes, no fp16, compile or sync mode

On synthetic data, with the students (and teachers, where there is one) of the real architectures at random init:

1. sync: `torch.cuda.set_sync_debug_mode("error")` around a training epoch and an evaluation (precise BatchNorm
   statistics where the student has BatchNorm, then the validation pass) of each experiment at --lam 0.3: the
   first call that waits for the device raises; where it came from is recorded, and the check goes on. Expected:
   the reads transformers' forwards still make (tests/test_host_reads.py lists them), else utils/metrics.py at the
   end of the pass (the epoch's sums, read once).
2. steps: `step_cost.measure_steps` for each student in fp32, --amp bf16 and --amp fp16, the ResNets also in
   channels_last (the switch `utils.processes.CHANNELS_LAST_ON_CUDA` waits for): eager and limit steps/s,
   loop/limit, and the trial's peak memory (`torch.cuda.max_memory_allocated`, reset before each measurement).
3. torchrun: `torchrun --nproc_per_node 1` (NCCL on CUDA, gloo on the CPU) running IEMOCAP_A2T must exit 0 with the
   test accuracy of the same run without torchrun.
4. compiled: compiled against eager steps/s, side by side (`step_cost.measure_steps`), for the settings of
   COMPILED in turn, each started only while the check is younger than COMPILE_UNTIL_S: how long inductor
   compiles on a fresh machine is not known beforehand, so this part comes last and takes what time is left.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a file, the repository root is not on the path
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see teacher_cost.py)

import torch  # noqa: E402
from step_cost import Plan, batch_size, build_trial, measure_steps, mib, rounds_text, write_step_data  # noqa: E402
from teacher_cost import SCRIPTS  # noqa: E402  (this folder's own benchmarks)

from utils.loop import run_epoch  # noqa: E402
from utils.precise_bn import recompute_batchnorm_statistics  # noqa: E402
from utils.trial import Trial  # noqa: E402

PLANS = {"cuda": Plan(steps=40, rounds=3), "cpu": Plan(steps=1, rounds=1, batch_size=2, max_audio_seconds=0.25)}
AMPS = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}  # --amp: its name in the table
# Compiled against eager, in this order while time is left: bf16 first (what a GPU run would most likely use),
# the students expected to compile fastest first.
COMPILED = [(name, amp) for amp in ("bf16", "none", "fp16")
            for name in ("AVMNIST_A2V", "AVMNIST_V2A", "IEMOCAP_A2T", "IEMOCAP_T2A")]
# A compiled setting starts only before this: the parts before take about 2 minutes on an H200 (estimated, not
# measured), and one compilation may take another 2 on a fresh machine, within the 5 minutes.
COMPILE_UNTIL_S = 180
TORCHRUN_OPTIONS = ["--subset", "16", "--epochs", "2", "--n_times", "1"]
STARTED = time.perf_counter()


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns of text, aligned to the left (teacher_cost.table aligns numbers to the right)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header, ["-" * width for width in widths], *rows])


def guarded(check: str, experiment: str, setting: str, measure: Callable[[], dict]) -> dict:
    """The table row of one measurement: `measure()`'s result text and numbers. One that raises gives a row naming
    the error (its traceback goes to stderr) and the check goes on: it runs unattended."""
    row = {"check": check, "experiment": experiment, "setting": setting}
    print(f"[{time.perf_counter() - STARTED:4.0f} s] {check}: {experiment}, {setting}", file=sys.stderr, flush=True)
    try:
        row.update(measure())
    except Exception as error:  # any failure of a part is a finding to report, not a reason to stop the others
        traceback.print_exc()
        row["result"] = f"FAILED: {type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
    gc.collect()  # the part's trials: their loader workers and device memory
    return row


def where_read(error: BaseException) -> str:
    """Where a synchronising call came from: its innermost frame outside torch, named as tests/test_host_reads.py
    names the reads."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename)
        if "/torch/" in frame.filename:
            continue
        if REPO in path.parents:
            return f"{path.relative_to(REPO)}:{frame.name}"
        return f"{'transformers ' if '/transformers/' in frame.filename else ''}{path.name}:{frame.name}"
    return "torch"


def first_read(work: Callable[[], object], device: torch.device) -> str:
    """Run `work` with every synchronising CUDA call an error; where the first came from, or "none". On the CPU
    there is no such mode: `work` just runs."""
    if device.type != "cuda":
        work()
        return "not checked on the CPU (ran)"
    torch.cuda.set_sync_debug_mode("error")
    try:
        work()
    except RuntimeError as error:
        if "synchronizing" not in str(error):
            raise
        return where_read(error)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return "none"


def evaluate(trial: Trial) -> None:
    """What a trial does before it keeps a checkpoint (utils.loop.train_trial): precise BatchNorm statistics, then
    the validation pass."""
    if "precise_bn" in trial.loaders:
        recompute_batchnorm_statistics(trial.student, trial.loaders["precise_bn"], trial.device, trial.amp_dtype)
    run_epoch(trial, "val", "the check")


def sync_check(script: ModuleType, argv: list[str]) -> dict:
    trial = build_trial(script, argv)
    train = first_read(partial(run_epoch, trial, "train", "the check"), trial.device)
    evaluation = first_read(partial(evaluate, trial), trial.device)
    return {"result": f"training epoch: {train}; evaluation: {evaluation}", "train_first_read": train,
            "evaluation_first_read": evaluation}


def steps_part(script: ModuleType, argv: list[str], plan: Plan, channels_last: bool) -> dict:
    cost = measure_steps(script, argv, plan, ("eager", "limit"), channels_last)
    eager, limit, ratio = cost.steps_per_second("eager"), cost.steps_per_second("limit"), cost.ratio("eager", "limit")
    return {"result": f"{eager:7.1f} steps/s, limit {limit:7.1f}, loop/limit {ratio:.2f} "
                      f"({rounds_text(cost.ratios('eager', 'limit'))}), peak {mib(cost.peak_bytes['eager'])}",
            "steps": cost.steps, "batch": cost.batch, "eager_steps_per_s": eager, "limit_steps_per_s": limit,
            "loop_over_limit": ratio, "loop_over_limit_rounds": cost.ratios("eager", "limit"),
            "peak_bytes": cost.peak_bytes["eager"]}


def compiled_part(script: ModuleType, argv: list[str], plan: Plan) -> dict:
    cost = measure_steps(script, argv, plan, ("eager", "compiled"))
    compiled, eager = cost.steps_per_second("compiled"), cost.steps_per_second("eager")
    ratio = cost.ratio("compiled", "eager")
    recompiled = f" (+{cost.compile_in_rounds:.0f} s in the timed rounds)" if cost.compile_in_rounds else ""
    return {"result": f"{compiled:7.1f} steps/s, eager {eager:7.1f}, compiled/eager {ratio:.2f} "
                      f"({rounds_text(cost.ratios('compiled', 'eager'))}), compile {cost.compile_seconds:.0f} s"
                      f"{recompiled}, peak {mib(cost.peak_bytes['compiled'])}",
            "compiled_steps_per_s": compiled, "eager_steps_per_s": eager, "compiled_over_eager": ratio,
            "compiled_over_eager_rounds": cost.ratios("compiled", "eager"), "compile_seconds": cost.compile_seconds,
            "compile_seconds_in_rounds": cost.compile_in_rounds, "peak_bytes": cost.peak_bytes["compiled"]}


def test_accuracy(output_dir: Path) -> float:
    (results,) = output_dir.rglob("results.json")
    return json.loads(results.read_text())["trials"][0]["test"]["acc"]


def torchrun_check(argv: list[str], runs: Path) -> dict:
    """IEMOCAP_A2T under `torchrun --nproc_per_node 1` and without it: the same test accuracy."""
    script = SCRIPTS["IEMOCAP_A2T"]
    with contextlib.redirect_stdout(io.StringIO()):
        code = script.main([*argv, "--output_dir", str(runs / "plain")])
    if code != 0:
        return {"result": f"the plain run exited {code}"}
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                               f"{script.SCRIPT}.py", *argv, "--output_dir", str(runs / "torchrun")], cwd=REPO,
                              capture_output=True, text=True)
    if launched.returncode != 0:
        return {"result": f"exit {launched.returncode}: {(launched.stderr.strip().splitlines() or [''])[-1]}"}
    backend = json.loads(next((runs / "torchrun").rglob("args.json")).read_text())["processes"]["backend"]
    plain, accuracy = test_accuracy(runs / "plain"), test_accuracy(runs / "torchrun")
    same = "the same test accuracy as without torchrun" if accuracy == plain else "TEST ACCURACY DIFFERS"
    return {"result": f"exit 0, {backend}, {same} ({100 * accuracy:.2f} %, {100 * plain:.2f} %)", "backend": backend,
            "test_acc": accuracy, "plain_test_acc": plain}


def compiled_rows(argv: dict[str, list[str]], plan: Plan) -> list[dict]:
    """Compiled against eager for the settings of COMPILED in turn, each started only before COMPILE_UNTIL_S."""
    rows = []
    for name, amp in COMPILED:
        script, setting = SCRIPTS[name], f"{AMPS[amp]}, compiled"
        if time.perf_counter() - STARTED > COMPILE_UNTIL_S:
            rows.append({"check": "compiled", "experiment": script.TAG, "setting": setting,
                         "result": f"skipped: the check was past {COMPILE_UNTIL_S} s"})
        else:
            rows.append(guarded("compiled", script.TAG, setting,
                                partial(compiled_part, script, [*argv[name], "--amp", amp], plan)))
    return rows


def settings(name: str, device: str) -> list[tuple[str, bool]]:
    """The (--amp, channels_last) settings a student's steps are timed in."""
    amps = [amp for amp in AMPS if amp != "fp16" or device == "cuda"]  # --amp fp16 needs CUDA
    formats = (False, True) if name.startswith("AVMNIST") else (False,)  # only the ResNets have convolutions
    return [(amp, channels_last) for amp in amps for channels_last in formats]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cuda, or cpu for a dry run")
    parser.add_argument("--json", type=Path, help="also write the table here, with every number")
    options = parser.parse_args()
    device = options.device
    plan = PLANS[device]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        print(f"[{time.perf_counter() - STARTED:4.0f} s] writing the data", file=sys.stderr, flush=True)
        data = write_step_data(work, plan)
        common = ["--device", device, "--no_progress", "--output_dir", str(work / "runs")]
        argv = {name: [*data[name], *common] for name in SCRIPTS}

        for name, script in SCRIPTS.items():
            # Two training batches: the teacher's cache covers only their partners (and val and test).
            two_batches = ["--subset", str(2 * batch_size(script, plan)), "--teacher_path", "random"]
            rows.append(guarded("sync", script.TAG, "train epoch, evaluation, lam 0.3",
                                partial(sync_check, script, [*argv[name], *two_batches])))

        for name, script in SCRIPTS.items():
            for amp, channels_last in settings(name, device):
                setting = f"{AMPS[amp]}{' channels_last' if channels_last else ''}"
                rows.append(guarded("steps", script.TAG, setting,
                                    partial(steps_part, script, [*argv[name], "--amp", amp], plan, channels_last)))

        rows.append(guarded("torchrun", SCRIPTS["IEMOCAP_A2T"].TAG, "--nproc_per_node 1, fp32",
                            partial(torchrun_check, [*data["IEMOCAP_A2T"], *TORCHRUN_OPTIONS, "--device", device,
                                                     "--no_progress", "--teacher_path", "random"], work / "torchrun")))

        rows += compiled_rows(argv, plan) if device == "cuda" else [
            {"check": "compiled", "experiment": "all", "setting": "",
             "result": "skipped on the CPU (inductor compiles for minutes)"}]

    total = time.perf_counter() - STARTED
    device_name = torch.cuda.get_device_name() if device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"\n== GPU check: device {device} ({device_name}), torch {torch.__version__}; steps: measurements of "
          f"{plan.steps} step(s), {plan.rounds} round(s) ==")
    print(text_table(["check", "experiment", "setting", "result"],
                     [[row["check"], row["experiment"], row["setting"], row["result"]] for row in rows]))
    print(f"total {total:.0f} s")
    if options.json:
        report = {"device": device, "device_name": device_name, "torch": torch.__version__, "plan": vars(plan),
                  "total_seconds": total, "rows": rows}
        options.json.write_text(json.dumps(report, indent=1, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
