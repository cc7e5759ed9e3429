"""A sweep on Cloud TPU VMs, the whole life of the VMs: create, ship the code, install, run
detached, wait, retry
a preempted point, delete.

Point i runs on tpus[i % len(tpus)]. Each step is a command built by a pure function below; `plan`
lists them
in order (the dry run prints it) and `run_sweep` runs them, one thread per TPU:

    create   gcloud compute tpus tpu-vm create TPU --accelerator-type=... --version=... [--spot]
    ship     a `git archive` of HEAD, scp'd to every worker and unpacked into repo_dir (REVISION
    holds the commit)
    install  pip install -e '.[tpu]' on every worker
    run      one detached queue (setsid nohup) on every worker (a pod slice runs one process per
    host), training
             the TPU's points one after another: a failed point does not stop the next. A point's
             log goes to
             WORKDIR/POINT/logs/HOST.log, then its exit status to ~/sweep_status/POINT.exit on the
             VM
    wait     every poll_seconds: describe the VM (READY, PREEMPTED, ...) and read worker 0's exit
    statuses
    retry    a preempted VM is deleted and created again and its unfinished points rerun; main
    resumes each from
             its gs:// checkpoint. Exit status 3 (stopped by a signal, checkpoint saved) reruns the
             same way
    delete   unless keep; also after a failed step, so nothing is left billing

The sweep's status file, kept locally and copied to WORKDIR/sweep_status.json on every change, says
of each
point whether it is queued, running, done, preempted (and rerun) or failed, and why, on which TPU,
with its log.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from resnet_jax.sweeps.grid import point_command, point_name

REPO = Path(__file__).resolve().parents[2]  # the checkout whose HEAD the VMs run
STATUS_DIR = "~/sweep_status"  # on every worker: POINT.exit ("EXIT_STATUS SECONDS") and queue.pid
LOG_DIR = "~/sweep_logs"  # on every worker: POINT.log and queue.log
SWEEP_STATUS = "sweep_status.json"  # the sweep's status file, at the top of its workdir
LOST = ("PREEMPTED", "TERMINATED")  # VM states whose processes are gone: the VM is created again
# main's exit status when a signal stopped it after a checkpoint (errors.INTERRUPTED): rerun it
RESUME = 3
POLL_FAILURES = 5  # failed polls in a row after which a TPU's unfinished points count as failed

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


@dataclasses.dataclass(frozen=True)
class Cloud:
    """Where the TPU VMs live and what they are."""

    zone: str  # e.g. us-central2-b (v4), us-west4-a (v5e)
    accelerator_type: str = "v4-8"  # v4-8, v5litepod-8, ...; a pod slice (v4-32) has several hosts
    version: str = "tpu-ubuntu2204-base"  # the TPU VM's runtime software (v5e: v2-alpha-tpuv5-lite)
    spot: bool = False  # Spot VMs: cheaper, preemptible at any time
    repo_dir: str = "~/resnet_jax"  # where the code is unpacked on every worker


class Job(NamedTuple):
    """One point of the sweep as a VM runs it."""

    name: str  # point_name(point): its directory under the sweep's workdir
    workdir: str  # WORKDIR/NAME (gs://...)
    command: list[
        str
    ]  # python3 -m resnet_jax.main --config=... --workdir=WORKDIR/NAME --config.FIELD=VALUE ...


def make_jobs(config: str, points: Sequence[Mapping], workdir: str) -> list[Job]:
    """The sweep's points as jobs; `config` must lie in the checkout, as the VMs get only its
    files. Each runs
    with --distributed: on a pod slice every worker runs the point and JAX finds the others
    itself."""
    config = repo_relative(config)
    base = workdir.rstrip("/")
    return [
        Job(
            point_name(p),
            f"{base}/{point_name(p)}",
            [*point_command(config, f"{base}/{point_name(p)}", p, "python3"), "--distributed"],
        )
        for p in points
    ]


def repo_relative(config: str) -> str:
    """`path[:arg]` with the path made relative to the checkout (the queue runs in repo_dir on the
    VM)."""
    path, colon, arg = config.partition(":")
    try:
        relative = Path(path).resolve().relative_to(REPO)
    except ValueError:
        raise ValueError(
            f"--config={config}: the TPU VMs get the files of the checkout {REPO}; give a config "
            f"inside it (committed: the VMs run HEAD)"
        ) from None
    return f"{relative.as_posix()}{colon}{arg}"


def queues(jobs: Sequence[Job], tpus: Sequence[str]) -> dict[str, list[Job]]:
    """Job i to tpus[i % len(tpus)]; a TPU left without a job is not created."""
    if not tpus:
        raise ValueError("--tpus: give at least one TPU VM name (--tpus=NAME[,NAME...])")
    assigned: dict[str, list[Job]] = {tpu: [] for tpu in tpus}
    for i, job in enumerate(jobs):
        assigned[tpus[i % len(tpus)]].append(job)
    return {tpu: queue for tpu, queue in assigned.items() if queue}


# The commands, one pure function each.


def remote(path: str) -> str:
    """A path for the VM's shell: quoted, but with a leading ~/ left for the shell to expand."""
    return "~/" + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)


def tpu_vm(verb: str, tpu: str, cloud: Cloud, *args: str) -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", verb, tpu, f"--zone={cloud.zone}", *args]


def ssh(tpu: str, cloud: Cloud, script: str, worker: str = "all") -> list[str]:
    return tpu_vm("ssh", tpu, cloud, f"--worker={worker}", f"--command={script}")


def create_command(tpu: str, cloud: Cloud) -> list[str]:
    return tpu_vm(
        "create",
        tpu,
        cloud,
        f"--accelerator-type={cloud.accelerator_type}",
        f"--version={cloud.version}",
        *(["--spot"] if cloud.spot else []),
    )


def tarball_path(revision: str) -> str:
    return f"{tempfile.gettempdir()}/resnet_jax-{revision[:12]}.tar.gz"


def tarball_command(revision: str, tarball: str) -> list[str]:
    return ["git", "-C", str(REPO), "archive", "--format=tar.gz", f"--output={tarball}", revision]


def ship_commands(tpu: str, cloud: Cloud, tarball: str, revision: str) -> list[list[str]]:
    """Copy the tarball to every worker, then unpack it into a clean repo_dir with the commit in
    REVISION."""
    name, repo = Path(tarball).name, remote(cloud.repo_dir)
    unpack = (
        f"rm -rf {repo} && mkdir -p {repo} && tar -xzf ~/{name} -C {repo} && "
        f"echo {revision} > {repo}/REVISION"
    )
    return [
        tpu_vm("scp", tpu, cloud, tarball, f"{tpu}:{name}", "--worker=all"),
        ssh(tpu, cloud, unpack),
    ]


def install_command(tpu: str, cloud: Cloud) -> list[str]:
    return ssh(tpu, cloud, f'cd {remote(cloud.repo_dir)} && python3 -m pip install -e ".[tpu]"')


def queue_script(cloud: Cloud, jobs: Sequence[Job]) -> str:
    """The bash script of a TPU's queue: its points in turn, joined by `;` so that a failed one
    does not stop the
    next. A point's exit status is written (atomically, by a rename) after its log is copied up."""
    lines = [f"cd {remote(cloud.repo_dir)} || exit 1"]
    for job in jobs:
        log, done = f"{LOG_DIR}/{job.name}.log", f"{STATUS_DIR}/{job.name}.exit"
        lines += [
            "start=$SECONDS",
            f"{shlex.join(job.command)} > {log} 2>&1",
            "code=$?",
            f'gcloud storage cp {log} {shlex.quote(job.workdir + "/logs/")}"$(hostname)".log',
            f'echo "$code $((SECONDS - start))" > {done}.tmp && mv {done}.tmp {done}',
        ]
    return "; ".join(lines)


def run_command(tpu: str, cloud: Cloud, jobs: Sequence[Job]) -> list[str]:
    """Start the queue on every worker, detached (setsid nohup: it outlives the ssh session), and
    return at once.
    The points' old exit statuses go first, so no poll reads a previous attempt's. $! is the
    queue's own pid:
    without job control a background command is no process group leader, so setsid does not fork."""
    stale = " ".join(f"{STATUS_DIR}/{job.name}.exit" for job in jobs)
    return ssh(
        tpu,
        cloud,
        f"mkdir -p {STATUS_DIR} {LOG_DIR} && rm -f {stale}; "
        f"setsid nohup bash -c {shlex.quote(queue_script(cloud, jobs))} "
        f"> {LOG_DIR}/queue.log 2>&1 < /dev/null & echo $! > {STATUS_DIR}/queue.pid",
    )


def state_command(tpu: str, cloud: Cloud) -> list[str]:
    """Prints the VM's state: CREATING, READY, PREEMPTED, TERMINATED, ..."""
    return tpu_vm("describe", tpu, cloud, "--format=value(state)")


def statuses_command(tpu: str, cloud: Cloud) -> list[str]:
    """Prints worker 0's finished points, 'POINT EXIT_STATUS SECONDS' each, then 'queue: running'
    or 'queue: ended'."""
    return ssh(
        tpu,
        cloud,
        f'for f in {STATUS_DIR}/*.exit; do [ -e "$f" ] && echo "$(basename "$f" .exit) '
        f'$(cat "$f")"; done; kill -0 "$(cat {STATUS_DIR}/queue.pid 2>/dev/null)" 2>/dev/null '
        f"&& echo 'queue: running' || echo 'queue: ended'",
        worker="0",
    )


def delete_command(tpu: str, cloud: Cloud) -> list[str]:
    return tpu_vm("delete", tpu, cloud, "--quiet")


def upload_command(status_file: str, workdir: str) -> list[str]:
    return ["gcloud", "storage", "cp", status_file, f"{workdir.rstrip('/')}/{SWEEP_STATUS}"]


def plan(
    assigned: Mapping[str, Sequence[Job]],
    cloud: Cloud,
    *,
    revision: str,
    workdir: str,
    status_file: str,
    keep: bool = False,
) -> list[list[str]]:
    """Every command of the sweep in order, as the dry run prints it: the tarball; for each TPU
    create, ship,
    install, run, the two polls of its wait, delete; the status file's upload."""
    commands = [tarball_command(revision, tarball_path(revision))]
    for tpu, jobs in assigned.items():
        commands += [command for _, command in bring_up(tpu, cloud, revision)]
        commands += [
            run_command(tpu, cloud, jobs),
            state_command(tpu, cloud),
            statuses_command(tpu, cloud),
            *([] if keep else [delete_command(tpu, cloud)]),
        ]
    return commands + [upload_command(status_file, workdir)]


def parse_statuses(text: str) -> tuple[dict[str, tuple[int, float]], bool]:
    """statuses_command's output -> ({point: (exit status, seconds)}, whether the queue still
    runs)."""
    finished = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(\S+) (-?\d+) (\d+(?:\.\d+)?)", line.strip())
        if match:
            finished[match[1]] = (int(match[2]), float(match[3]))
    return finished, "queue: ended" not in text.splitlines()


def error_line(result: subprocess.CompletedProcess) -> str:
    """gcloud's own error line (ERROR: (gcloud.compute.tpus.tpu-vm.create) ...), else stderr's last
    line."""
    lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
    return next(
        (line for line in lines if line.startswith("ERROR:")),
        lines[-1] if lines else f"exit status {result.returncode}",
    )


def default_status_file(workdir: str) -> str:
    """sweep_status-BUCKET_PATH.json in the current directory: the local copy of
    WORKDIR/sweep_status.json."""
    return f"sweep_status-{re.sub(r'[^A-Za-z0-9._-]+', '_', workdir.removeprefix('gs://').strip('/'))}.json"


def read_status(status_file: str, workdir: str) -> dict[str, dict]:
    """The points of an earlier launch of this sweep ({} if none): a rerun skips the done ones."""
    path = Path(status_file)
    before = json.loads(path.read_text()) if path.exists() else {}
    return dict(before.get("points", {})) if before.get("workdir") == workdir else {}


def unfinished(jobs: Sequence[Job], before: Mapping[str, dict]) -> list[Job]:
    """The jobs not done in an earlier launch (`before` from read_status)."""
    return [job for job in jobs if before.get(job.name, {}).get("status") != "done"]


def git_revision() -> str:
    """HEAD of the checkout; a warning on stderr when it has uncommitted changes (they are not
    shipped)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout

    try:
        revision, dirty = (
            git("rev-parse", "HEAD").strip(),
            git("status", "--porcelain", "--untracked-files=no"),
        )
    except (OSError, subprocess.CalledProcessError):
        raise ValueError(
            f"--launcher=tpu ships the git revision of the checkout, and {REPO} is not a git "
            f"checkout with a commit"
        ) from None
    if dirty:
        print(
            f"warning: uncommitted changes in {REPO} are not shipped; the TPU VMs run commit "
            f"{revision[:12]}",
            file=sys.stderr,
            flush=True,
        )
    return revision


# The loop that runs them.


def run_quietly(command: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, stdin=subprocess.DEVNULL)


class SweepStatus:
    """The sweep's status file, {point: {status, tpu, exit_status, seconds, reason, log, retries}}:
    written
    locally and copied to WORKDIR/sweep_status.json on every change. The TPUs' threads share one."""

    def __init__(
        self, path: str, workdir: str, revision: str, points: Mapping[str, dict], run: Runner
    ):
        self.path, self.workdir, self.revision, self.run = path, workdir, revision, run
        self.points = dict(points)
        self._lock = threading.Lock()

    def update(self, names: Sequence[str], status: str, **fields) -> None:
        """Set the points' records; failures as one line each on stderr (`error: POINT on TPU:
        why`)."""
        with self._lock:
            for name in names:
                self.points[name] = {
                    "status": status,
                    **{k: v for k, v in fields.items() if v is not None},
                }
                where = f"{name} on {fields.get('tpu')}"
                if status == "failed":
                    print(f"error: {where}: {fields.get('reason')}", file=sys.stderr, flush=True)
                else:
                    print(
                        f"{where}: {status}"
                        + (f" ({fields['reason']})" if fields.get("reason") else ""),
                        flush=True,
                    )
            Path(self.path).write_text(
                json.dumps(
                    {"workdir": self.workdir, "revision": self.revision, "points": self.points},
                    indent=2,
                )
                + "\n"
            )
            result = self.run(upload_command(self.path, self.workdir))
            if result.returncode:
                print(
                    f"warning: {self.path} not copied to {self.workdir}: {error_line(result)}",
                    file=sys.stderr,
                    flush=True,
                )


@dataclasses.dataclass(frozen=True)
class Launch:
    """What the TPUs' threads share."""

    cloud: Cloud
    revision: str
    status: SweepStatus
    run: Runner = run_quietly
    keep: bool = False
    poll_seconds: float = 60.0
    max_retries: int = 3
    stop: threading.Event = dataclasses.field(
        default_factory=threading.Event
    )  # set: stop waiting, clean up


class Outcome(NamedTuple):
    """How a TPU's wait ended."""

    finished: dict[str, tuple[int, float]]  # point -> (exit status, seconds)
    lost: str | None  # the VM's state when it was preempted or terminated
    error: (
        str | None
    )  # why polling gave up (failed POLL_FAILURES times, or the launcher was stopped)


def wait(launch: Launch, tpu: str, jobs: Sequence[Job]) -> Outcome:
    """Poll the VM until every job has an exit status, its queue ended, or the VM is lost."""
    finished: dict[str, tuple[int, float]] = {}
    failures = 0
    while not launch.stop.wait(launch.poll_seconds):
        state = launch.run(state_command(tpu, launch.cloud))
        if state.returncode == 0 and state.stdout.strip() in LOST:
            return Outcome(finished, state.stdout.strip(), None)
        if state.returncode == 0 and state.stdout.strip() != "READY":
            continue  # CREATING, REPAIRING, RESTARTING, ...: not yet
        answer = launch.run(statuses_command(tpu, launch.cloud)) if state.returncode == 0 else state
        if answer.returncode == 0:
            failures = 0
            finished, running = parse_statuses(answer.stdout)
            if not running or all(job.name in finished for job in jobs):
                return Outcome(finished, None, None)
            continue
        failures += 1  # an ssh cut by a preemption shows as PREEMPTED on the next poll
        if failures == POLL_FAILURES:
            return Outcome(
                finished, None, f"polling failed {failures} times in a row: {error_line(answer)}"
            )
    return Outcome(finished, None, "the launcher was stopped; rerun the same command to resume")


def run_steps(launch: Launch, tpu: str, steps: Sequence[tuple[str, list[str]]]) -> str | None:
    """Run the steps in order; None, or why the first that failed did (its name and gcloud's error
    line)."""
    for label, command in steps:
        print(
            f"{tpu}: {label}: {shlex.join(command) if label != 'run' else 'the queue, detached'}",
            flush=True,
        )
        result = launch.run(command)
        if result.returncode and not (
            label == "create" and "ALREADY_EXISTS" in result.stderr
        ):  # kept VM: reuse
            return f"{label} failed: {error_line(result)}"
    return None


def bring_up(tpu: str, cloud: Cloud, revision: str) -> list[tuple[str, list[str]]]:
    """The steps that make a VM ready for its queue: create, ship (copy, unpack), install."""
    copy, unpack = ship_commands(tpu, cloud, tarball_path(revision), revision)
    return [
        ("create", create_command(tpu, cloud)),
        ("ship", copy),
        ("ship", unpack),
        ("install", install_command(tpu, cloud)),
    ]


def record_finished(
    status: SweepStatus, tpu: str, jobs: Sequence[Job], outcome: Outcome, retries: int
) -> list[Job]:
    """Record the jobs that ran to their end, done or failed (with the exit status and the log);
    returns the
    others, which a preemption or a signal (exit status 3, checkpoint saved) cut short."""
    rest = []
    for job in jobs:
        code, seconds = outcome.finished.get(job.name, (None, None))
        if code is None or code == RESUME:
            rest.append(job)
            continue
        log = f"{job.workdir}/logs/"
        status.update(
            [job.name],
            "done" if code == 0 else "failed",
            tpu=tpu,
            exit_status=code,
            seconds=seconds,
            log=log,
            reason=f"exit status {code}; its log is in {log}" if code else None,
            retries=retries or None,
        )
    return rest


def run_tpu(launch: Launch, tpu: str, jobs: Sequence[Job]) -> None:
    """The life of one TPU VM: bring it up, run its queue, wait; rerun what a preemption (or a
    signal) cut short,
    on a new VM when the old one is gone, up to max_retries times; delete the VM at the end unless
    keep."""
    cloud, status = launch.cloud, launch.status
    pending, retries, fresh = list(jobs), 0, True
    try:
        while pending:
            names = [job.name for job in pending]
            start = (
                bring_up(tpu, cloud, launch.revision) if fresh else []
            )  # a VM that is still up: run again
            failure = run_steps(launch, tpu, [*start, ("run", run_command(tpu, cloud, pending))])
            if failure:
                status.update(names, "failed", tpu=tpu, reason=failure, retries=retries or None)
                return
            status.update(names, "running", tpu=tpu, retries=retries or None)
            outcome = wait(launch, tpu, pending)
            pending = record_finished(status, tpu, pending, outcome, retries)
            names = [job.name for job in pending]
            cut = (
                f"the TPU VM was {outcome.lost}"
                if outcome.lost
                else "a signal or the end of its queue stopped it"
            )
            if pending and (outcome.error or retries == launch.max_retries):
                status.update(
                    names,
                    "stopped" if launch.stop.is_set() else "failed",
                    tpu=tpu,
                    retries=retries or None,
                    reason=outcome.error
                    or f"{cut}, {retries + 1} times; rerun the sweep to resume it",
                )
                return
            if pending:
                retries += 1
                status.update(
                    names,
                    "preempted",
                    tpu=tpu,
                    reason=f"{cut}; rerun {retries} of {launch.max_retries}",
                    retries=retries,
                )
            fresh = outcome.lost is not None
            if pending and fresh:
                run_steps(
                    launch, tpu, [("delete", delete_command(tpu, cloud))]
                )  # if it fails, create says why
    finally:
        if not launch.keep:
            print(f"{tpu}: delete: {shlex.join(delete_command(tpu, cloud))}", flush=True)
            result = launch.run(delete_command(tpu, cloud))
            if result.returncode and "NOT_FOUND" not in result.stderr:
                print(
                    f"warning: {tpu}: delete failed: {error_line(result)}; delete it yourself: "
                    f"{shlex.join(delete_command(tpu, cloud))}",
                    file=sys.stderr,
                    flush=True,
                )


def run_sweep(
    jobs: Sequence[Job],
    tpus: Sequence[str],
    cloud: Cloud,
    *,
    workdir: str,
    status_file: str,
    keep: bool = False,
    poll_seconds: float = 60.0,
    max_retries: int = 3,
    run: Runner = run_quietly,
) -> dict[str, dict]:
    """Run the jobs on the TPUs (done ones of an earlier launch skipped); returns the status of
    every point.
    Ctrl-C stops the waits, deletes the VMs unless keep, and is raised again."""
    if shutil.which("gcloud") is None:
        raise ValueError(
            "gcloud is not on PATH: install the Google Cloud CLI (https://cloud.google.com/sdk) "
            "and run `gcloud auth login`"
        )
    revision = git_revision()
    before = read_status(status_file, workdir)
    todo = unfinished(jobs, before)
    for job in jobs:
        if job not in todo:
            print(f"{job.name}: done, skipped", flush=True)
    status = SweepStatus(status_file, workdir, revision, before, run)
    assigned = queues(todo, tpus)
    if not assigned:
        return status.points
    tarball = tarball_path(revision)
    made = run(tarball_command(revision, tarball))
    if made.returncode:
        raise RuntimeError(f"git archive failed: {error_line(made)}")
    for tpu, queue in assigned.items():
        status.update([job.name for job in queue], "queued", tpu=tpu)
    launch = Launch(cloud, revision, status, run, keep, poll_seconds, max_retries)
    with concurrent.futures.ThreadPoolExecutor(len(assigned)) as pool:
        futures = [pool.submit(run_tpu, launch, tpu, queue) for tpu, queue in assigned.items()]
        try:
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            launch.stop.set()
            concurrent.futures.wait(futures)
            raise
    return status.points
