"""The job scripts of examples/slurm/ as written, on a real Slurm: a controller and two slurmd "nodes" on this
machine with placeholder GPUs (so --gpus-per-node and SLURM_GPUS_ON_NODE work while CUDA sees none, and torchrun
starts gloo processes on the CPU), from Debian's slurm-wlm and munge, which the fixture installs if they are missing
and it runs as root. Tiny data and models; options given to sbatch win over the scripts' #SBATCH lines (fewer GPUs
and CPUs), and options after a script go to its experiment.

Marked `slurm`, which pytest.ini leaves out of `python -m pytest`; .ci/run runs them after the README's tests:
    python -m pytest -m slurm -n 0 tests/test_slurm.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import REPO, assert_same_outcome

pytestmark = pytest.mark.slurm

NODES = ("slurmnode1", "slurmnode2")
HOSTS = Path("/etc/hosts")
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
# How long a requeued job waits before it may start again (slurm.conf's AuthInfo cred_expire, 120 s by default:
# https://slurm.schedmd.com/slurm.conf.html#OPT_cred_expire).
REQUEUE_DELAY = 10

SLURM_CONF = """\
ClusterName=onemodality
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire={requeue_delay}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobRequeue=1
KillWait=5
SchedulerParameters=sched_interval=2
GresTypes=gpu
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool/%n
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd-%n.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd-%n.log
NodeName={node1} NodeHostname={host} NodeAddr=127.0.0.1 Port={port1} CPUs=4 RealMemory=10000 Gres=gpu:4
NodeName={node2} NodeHostname={host} NodeAddr=127.0.0.1 Port={port2} CPUs=4 RealMemory=10000 Gres=gpu:4
PartitionName=main Nodes={node1},{node2} Default=YES MaxTime=INFINITE State=UP
"""
GRES_CONF = """\
AutoDetect=off
NodeName={node1},{node2} Name=gpu File={folder}/gpu[0-3]
"""


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


def command(*words: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(words, capture_output=True, text=True, env=env, timeout=timeout)


def installed() -> bool:
    return all(shutil.which(name) for name in ("slurmctld", "slurmd", "sbatch", "munged"))


def install_or_skip() -> None:
    """Debian's slurm-wlm and munge, installed if they are missing (root and apt-get only)."""
    if installed():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Slurm is not installed (apt-get install slurm-wlm munge) and this user cannot install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for words in (("apt-get", "update"), ("apt-get", "install", "-y", "slurm-wlm", "munge")):
        done = command(*words, env=env, timeout=900)
        if done.returncode:
            pytest.skip(f"{' '.join(words)} failed: {done.stderr.strip().splitlines()[-1:]}")


def start_munge() -> int | None:
    """munged, unless one answers already; its process id if this started it."""
    if command("sh", "-c", "munge -n | unmunge").returncode == 0:
        return None
    Path("/run/munge").mkdir(exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    if not Path("/etc/munge/munge.key").exists():
        command("su", "-s", "/bin/sh", "munge", "-c", "mungekey --create")
    started = command("su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged")
    if started.returncode or command("sh", "-c", "munge -n | unmunge").returncode:
        pytest.fail(f"munged did not start: {started.stderr.strip()}")
    return int(Path("/run/munge/munged.pid").read_text())


def stop(pid: int) -> None:
    """Stop a daemon this fixture started, and wait for it to end."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def name_the_nodes() -> str | None:
    """Make the node names resolve to this machine's address, as a rendezvous endpoint on the first node needs (and
    as torchrun's agent must see, to host the rendezvous there): a line in /etc/hosts. The file as it was, if this
    changed it (None if it did not need to)."""
    address = socket.gethostbyname(socket.gethostname())
    if all(resolves(node) for node in NODES):
        if any(socket.gethostbyname(node) != address for node in NODES):
            pytest.skip(f"the node names {', '.join(NODES)} name another machine here")
        return None
    original = HOSTS.read_text()
    HOSTS.write_text(f"{original.rstrip()}\n{address} {' '.join(NODES)}  # tests/test_slurm.py, while it runs\n")
    return original


def resolves(name: str) -> bool:
    try:
        socket.gethostbyname(name)
    except OSError:
        return False
    return True


class Slurm:
    """A running test cluster: `submit` a job script of examples/slurm/, `wait` for a job, `scontrol`."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env

    def run(self, *words: str) -> str:
        done = command(*words, env=self.env)
        assert done.returncode == 0, f"{' '.join(words)}: {done.stderr}"
        return done.stdout

    def submit(self, script: str, *options: str, args: list[str], **variables: str) -> str:
        """`sbatch OPTIONS examples/slurm/SCRIPT ARGS` from the repository's folder, with the environment `variables`
        (the job sees the environment it was submitted in); the job id."""
        done = subprocess.run(["sbatch", "--parsable", *options, str(REPO / "examples" / "slurm" / script), *args],
                              capture_output=True, text=True, env={**self.env, **variables}, cwd=REPO, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split(";")[0]

    def jobs(self, job: str) -> list[dict[str, str]]:
        """`scontrol show job` of `job` (an array: of each of its tasks), one dict of fields each."""
        return [dict(field.split("=", 1) for field in line.split() if "=" in field)
                for line in self.run("scontrol", "show", "job", "-o", job).splitlines() if line.strip()]

    def wait_for(self, path: Path, job: str, timeout: float = 180) -> None:
        """Until `path` exists, looked for every 10 ms (a tiny run writes its next files within a second: the test
        acts on it as soon as it appears); the job's state each second, for the message if it never does."""
        deadline = last_look = time.monotonic()
        deadline += timeout
        while not path.exists():
            now = time.monotonic()
            if now > last_look + 1:
                records, last_look = self.jobs(job), now
                assert now < deadline and not all(record["JobState"] in ENDED for record in records), (
                    f"job {job} never wrote {path}: {records}\n{self.logs()}")
            time.sleep(0.01)

    def wait_ended(self, job: str, timeout: float = 300) -> list[dict[str, str]]:
        """The job's records (an array's: each task's) once every one has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.jobs(job)
            if all(record["JobState"] in ENDED for record in records):
                return records
            time.sleep(0.5)
        raise AssertionError(f"job {job} timed out: {records}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-15:])
                         for path in sorted(self.folder.glob("*.log")))


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Iterator[Slurm]:
    """slurmctld and two slurmd nodes of 4 placeholder GPUs and 4 CPUs each (more than this machine has: the
    configured counts win), on free ports, with their state in a temporary folder; stopped at the end."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the test cluster runs Debian's Slurm on Linux")
    if os.geteuid() != 0:
        pytest.skip("the test cluster's slurmd runs as root")
    if not resolves(socket.gethostname()):
        pytest.skip(f"this machine's name {socket.gethostname()} does not resolve (torchrun's rendezvous needs it)")
    install_or_skip()
    folder = tmp_path_factory.mktemp("slurm")
    (folder / "spool").mkdir()
    for gpu in range(4):
        (folder / f"gpu{gpu}").touch()
    ctld_port, port1, port2 = free_ports(3)
    names = dict(zip(("node1", "node2"), NODES))
    (folder / "slurm.conf").write_text(SLURM_CONF.format(host=socket.gethostname().split(".")[0], folder=folder,
                                                         ctld_port=ctld_port, port1=port1, port2=port2,
                                                         requeue_delay=REQUEUE_DELAY, **names))
    (folder / "gres.conf").write_text(GRES_CONF.format(folder=folder, **names))
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    munged = start_munge()
    hosts = name_the_nodes()
    cluster = Slurm(folder, env)
    try:
        cluster.run("slurmctld", "-f", str(folder / "slurm.conf"))
        for node in NODES:
            cluster.run("slurmd", "-N", node, "-f", str(folder / "slurm.conf"))
        deadline = time.monotonic() + 60
        while cluster.run("sinfo", "-h", "-N", "-o", "%t").split() != ["idle", "idle"]:
            assert time.monotonic() < deadline, f"the nodes did not come up\n{cluster.logs()}"
            time.sleep(0.5)
        yield cluster
    finally:
        command("scancel", "--user", "root", env=env)
        for pid_file in sorted(folder.glob("*.pid")):
            stop(int(pid_file.read_text()))
        if munged is not None:
            stop(munged)
        if hosts is not None:
            HOSTS.write_text(hosts)


def job_options(name: str, output: Path, *more: str) -> list[str]:
    """sbatch options for a test job: one CPU a task, the job's output in `output`."""
    return [f"--job-name={name}", "--cpus-per-task=1", f"--output={output}", *more]


def test_single_node_requeued_mid_run_equals_the_run_left_alone_and_a_second_job_on_it_is_refused(
        slurm, iemocap, tiny_models, tmp_path):
    args = ["--teacher_path", tiny_models["bert"], "--student_path", tiny_models["wav2vec2"], "--subset", "16",
            "--batch_size", "4", "--epochs", "8", "--n_times", "2", "--warmup_epochs", "0",
            "--output_dir", str(tmp_path / "runs")]
    runs = tmp_path / "runs" / "IEMOCAP_T2A"
    requeued = slurm.submit("single_node.sbatch", *job_options("requeued", tmp_path / "requeued.out",
                                                               "--gpus-per-node=2"), args=args, IEMOCAP=str(iemocap))
    alone = slurm.submit("single_node.sbatch", *job_options("alone", tmp_path / "alone.out", "--gpus-per-node=2"),
                         args=args, IEMOCAP=str(iemocap))
    slurm.wait_for(runs / "requeued" / "trial0" / "train_state.pt", requeued)
    # It keeps its run folder, and stays mid-run, while another job tries: its first process (the lock's holder) is
    # stopped at once, as Slurm's suspend of the whole job takes about a second to reach it.
    holder = (runs / "requeued" / "lock").read_text().split()
    os.kill(int(holder[1]), signal.SIGSTOP)
    slurm.run("scontrol", "suspend", requeued)
    assert not json.loads((runs / "requeued" / "results.json").read_text())["complete"]
    second = slurm.submit("single_node.sbatch", *job_options("requeued", tmp_path / "second.out",
                                                             "--gpus-per-node=2"), args=args, IEMOCAP=str(iemocap))
    (record,) = slurm.wait_ended(second)
    out = (tmp_path / "second.out").read_text()
    assert record["JobState"] == "FAILED", out[-3000:]
    assert (f"IEMOCAP_T2A.py: error: {runs / 'requeued'} is in use by process {holder[1]} on {holder[0]}, which "
            "runs or resumes it") in out, out[-3000:]
    assert out.count("exitcode  : 2") == 2  # torchrun's report of its two processes
    slurm.run("scontrol", "resume", requeued)
    slurm.run("scontrol", "requeue", requeued)
    (record,) = slurm.wait_ended(requeued)
    assert record["JobState"] == "COMPLETED" and record["Restarts"] == "1", (tmp_path / "requeued.out").read_text()
    assert slurm.wait_ended(alone)[0]["JobState"] == "COMPLETED", (tmp_path / "alone.out").read_text()
    log = (runs / "requeued" / "log.txt").read_text()
    assert log.count("Run folder: ") == 2 and "Trial 1/2 (seed 1234), resumed after epoch" in log, log
    assert_same_outcome(runs / "requeued", runs / "alone")
    assert len(json.loads((runs / "requeued" / "args.json").read_text())["resumed"]) == 1


def test_multi_node_meets_at_the_rendezvous_on_two_nodes(slurm, iemocap, tiny_models, tmp_path):
    args = ["--teacher_path", tiny_models["wav2vec2"], "--student_path", tiny_models["bert"], "--subset", "8",
            "--epochs", "1", "--n_times", "1", "--warmup_epochs", "0", "--output_dir", str(tmp_path / "runs")]
    job = slurm.submit("multi_node.sbatch", *job_options("two_nodes", tmp_path / "job.out", "--gpus-per-node=1"),
                       args=args, IEMOCAP=str(iemocap))
    (record,) = slurm.wait_ended(job)
    assert record["JobState"] == "COMPLETED", (tmp_path / "job.out").read_text()
    assert record["NodeList"] == "slurmnode[1-2]"
    run = tmp_path / "runs" / "IEMOCAP_A2T" / "two_nodes"
    assert json.loads((run / "args.json").read_text())["processes"]["world_size"] == 2  # one process on each node
    assert json.loads((run / "results.json").read_text())["complete"] is True


def test_lam_sweep_task_signalled_before_its_time_limit_requeues_itself_alone_then_the_report(
        slurm, avmnist, tiny_models, tmp_path):
    # Two tasks, one at a time, so that the second to start carries the array's own job id (whose requeue would
    # requeue the finished first task too). It is signalled as --signal=B:USR1 signals it: its shell alone (scancel
    # --batch; --full would also end the run with USR1), rather than at a time limit, which Slurm may signal up to
    # a minute early.
    args = ["--teacher_path", tiny_models["wav2vec2"], "--subset", "48", "--batch_size", "16", "--epochs", "12",
            "--output_dir", str(tmp_path / "runs")]
    array = slurm.submit("lam_sweep.sbatch", *job_options("sweep", tmp_path / "sweep-%a.out", "--array=0-1%1"),
                         args=args, AVMNIST=str(avmnist))
    runs = tmp_path / "runs" / "AVMNIST_A2V"
    slurm.wait_for(runs / "lam0.3_seed42" / "trial0" / "train_state.pt", array)
    slurm.run("scancel", "--signal=USR1", "--batch", f"{array}_1")
    tasks = {record["ArrayTaskId"]: record for record in slurm.wait_ended(array)}
    assert tasks["0"]["JobState"] == tasks["1"]["JobState"] == "COMPLETED", tasks
    assert (tasks["0"]["Restarts"], tasks["1"]["Restarts"]) == ("0", "1")
    assert tasks["1"]["JobId"] == array  # the task that requeued itself carries the array's id
    assert (runs / "lam0_seed42" / "log.txt").read_text().count("Run folder: ") == 1
    assert ", resumed after epoch" in (runs / "lam0.3_seed42" / "log.txt").read_text()
    report = subprocess.run([sys.executable, "-m", "utils.report", str(runs)], capture_output=True, text=True,
                            cwd=REPO, env=slurm.env, timeout=120)
    assert report.returncode == 0, report.stderr
    for lam in ("0.0", "0.3"):  # a group of one trial (seed 42) for each lam
        assert f"\n| AVMNIST A->V | {lam} | 1 | 42 | " in report.stdout, report.stdout
    assert "## Unfinished or broken runs (left out)\n\nNone." in report.stdout, report.stdout
