r"""A sweep on SkyPilot: each point (once per seed) a managed job, on Cloud TPU VMs or any GPUs.

    python -m resnet_jax.sweep ... --workdir=gs://BUCKET/SWEEP --launcher=sky \
        --accelerators=tpu-v4-8 --spot

Each job runs the committed tree (`git archive` of HEAD, SkyPilot's workdir), installs the
accelerator's extra in its setup, and runs the point's `python -m resnet_jax.main` with its gs://
workdir and --distributed (on a TPU pod slice JAX finds the hosts itself; on several GPU nodes main
reads SkyPilot's SKYPILOT_* variables). SkyPilot relaunches a preempted job, and one that exited 3
(main stopped by SIGTERM after saving); the relaunched run resumes from its checkpoint in the
bucket. Other failures are retried `max_restarts_on_errors` times. `sky jobs queue` and `sky jobs
logs` follow the jobs; docs/cloud.md walks through it. Importing this module does not import
SkyPilot: only a launch does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from resnet_jax.sweeps.grid import point_command, point_name

REPO = Path(__file__).resolve().parents[2]
RESUMABLE_EXIT = (
    3  # main's status after a SIGTERM/SIGINT stop that saved its step: relaunch and resume
)
NAME_LENGTH = 60


@dataclasses.dataclass(frozen=True)
class Resources:
    """What every job of the sweep asks SkyPilot for."""

    accelerators: str  # 'tpu-v4-8', 'tpu-v5litepod-8', 'H100:8', ...
    spot: bool = False
    cloud: str | None = None  # 'gcp', 'aws', 'kubernetes', ...; None lets SkyPilot choose
    region: str | None = None
    zone: str | None = None
    num_nodes: int = 1  # GPU nodes per job (a TPU pod slice is one node of several hosts)
    max_restarts_on_errors: int = (
        1  # retries of a job that failed for a reason other than preemption
    )
    tpu_version: str = "tpu-ubuntu2204-base"  # the TPU VM's runtime software

    @property
    def tpu(self) -> bool:
        return self.accelerators.lower().startswith("tpu-")

    @property
    def extra(self) -> str:
        """The install extra of resnet_jax for these accelerators (the jax of requirements.txt)."""
        return "tpu" if self.tpu else "cuda12"

    def infra(self) -> str | None:
        """SkyPilot's 'cloud/region/zone' (a prefix of it); a zone needs its region and cloud."""
        parts = [self.cloud, self.region, self.zone]
        while parts and parts[-1] is None:
            parts.pop()
        if None in parts:
            raise ValueError(
                "--zone needs --region and --cloud, and --region needs --cloud (e.g. "
                "--cloud=gcp --region=us-central2 --zone=us-central2-b)"
            )
        return "/".join(parts) or None


@dataclasses.dataclass(frozen=True)
class Job:
    name: str  # the managed job's name: the sweep's and the point's
    point: dict
    workdir: str  # the point's gs:// workdir
    config: dict  # the SkyPilot task, as its YAML would say


def job_name(sweep: str, point: dict) -> str:
    """'stride-padding-model-stem-stride-2-seed-0': lower case, digits and '-', as clouds allow."""
    text = f"{sweep}-{point_name(point)}".lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    # keep both ends apart and unique: a short hash of the whole in the middle
    if len(text) > NAME_LENGTH:
        digest = hashlib.sha256(text.encode()).hexdigest()[:6]
        text = f"{text[: NAME_LENGTH - 20]}-{digest}-{text[-12:]}".strip("-")
    return text


def task_config(name: str, command: Sequence[str], resources: Resources, tree: str) -> dict:
    """The SkyPilot task of one point, as a dict in the YAML's schema (sky.Task.from_yaml_config
    takes it)."""
    # Several processes: the hosts of a TPU VM (JAX finds them), or several GPU nodes (main reads
    # SkyPilot's variables). One GPU node is one process, which must not look for a cluster.
    distributed = ["--distributed"] if resources.tpu or resources.num_nodes > 1 else []
    spec: dict = {"accelerators": resources.accelerators, "use_spot": resources.spot}
    infra = resources.infra()
    if infra:
        spec["infra"] = infra
    if resources.tpu:
        spec["accelerator_args"] = {"runtime_version": resources.tpu_version}
    spec["job_recovery"] = {
        "strategy": "EAGER_NEXT_REGION",
        "max_restarts_on_errors": resources.max_restarts_on_errors,
        "recover_on_exit_codes": [RESUMABLE_EXIT],
    }
    return {
        "name": name,
        "workdir": tree,
        "num_nodes": resources.num_nodes,
        "resources": spec,
        "envs": {"PYTHONUNBUFFERED": "1"},
        "setup": f"set -e\npython3 -m pip install -q -e '.[{resources.extra}]'\n",
        "run": shlex.join([*command, *distributed]) + "\n",
    }


def make_jobs(
    config: str,
    points: Sequence[dict],
    workdir: str,
    sweep: str,
    resources: Resources,
    tree: str,
    common: dict | None = None,
) -> list[Job]:
    """One job per point, the config path relative to the checkout (the job runs in its copy);
    `common` overrides go to every point without naming it."""
    if not workdir.startswith("gs://"):
        raise ValueError(
            f"--workdir={workdir}: --launcher=sky needs a gs://BUCKET/PATH workdir: the jobs "
            f"write their checkpoints and logs there, and a relaunched job resumes from it"
        )
    base = workdir.rstrip("/")
    config = repo_relative(config)
    jobs = []
    for point in points:
        directory = f"{base}/{point_name(point)}"
        name = job_name(sweep, point)
        command = point_command(config, directory, {**(common or {}), **point}, "python3")
        jobs.append(Job(name, point, directory, task_config(name, command, resources, tree)))
    return jobs


def repo_relative(config: str) -> str:
    """`path[:arg]`, the path relative to the checkout (the jobs get only its committed files)."""
    path, colon, arg = config.partition(":")
    try:
        relative = Path(path).resolve().relative_to(REPO)
    except ValueError:
        raise ValueError(
            f"--config={config}: the jobs get the committed files of the checkout {REPO}; give a "
            f"config inside it"
        ) from None
    return f"{relative.as_posix()}{colon}{arg}"


def committed_tree(revision: str, cache: Path) -> Path:
    """HEAD's files (what `git archive` ships: no untracked or uncommitted file), unpacked once per
    revision."""
    tree = cache / revision
    if not (tree / "pyproject.toml").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", revision],
            capture_output=True,
            check=True,
            timeout=120,
        )
        subprocess.run(
            ["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True, timeout=120
        )
    return tree


def yaml_documents(jobs: Sequence[Job]) -> str:
    """Every job's task as SkyPilot YAML, one document each; scripts as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return "---\n".join(yaml.dump(job.config, Dumper=Dumper, sort_keys=False) for job in jobs)


def submit(
    jobs: Sequence[Job],
    finished: Callable[[Job], bool],
    launch: Callable[[dict, str], None] | None = None,
    report: Callable[[str], None] = print,
) -> list[Job]:
    """Submit each unfinished job as a managed job (`launch(task_config, name)`; default SkyPilot's
    sky.jobs.launch); returns those submitted. A SkyPilot error names the job's point; one that says
    no cloud is set up stops the sweep with `sky check` as the fix."""
    launch = launch or launch_managed_job
    submitted = []
    for i, job in enumerate(jobs):
        if finished(job):
            report(f"[{i + 1}/{len(jobs)}] {job.name}: finished in {job.workdir}, skipped")
            continue
        try:
            launch(job.config, job.name)
        except Exception as error:  # SkyPilot's own exceptions, named by module below
            raise launch_error(job, error) from None
        report(f"[{i + 1}/{len(jobs)}] {job.name}: submitted (sky jobs logs -n {job.name})")
        submitted.append(job)
    return submitted


class LaunchError(RuntimeError):
    """A job SkyPilot refused; `no_cloud` when no cloud is set up for it."""

    def __init__(self, message: str, no_cloud: bool):
        super().__init__(message)
        self.no_cloud = no_cloud


def launch_error(job: Job, error: Exception) -> LaunchError:
    name = type(error).__name__
    text = " ".join(str(error).split()) or name
    if name in ("NoCloudAccessError", "CloudUserIdentityError", "InvalidCloudCredentials"):
        return LaunchError(
            f"point {point_name(job.point)}: SkyPilot has no cloud to launch on ({text}); run "
            f"`sky check` and set up the cloud it names",
            no_cloud=True,
        )
    return LaunchError(f"point {point_name(job.point)}: SkyPilot: {text}", no_cloud=False)


def launch_managed_job(config: dict, name: str) -> None:
    """sky.jobs.launch of the task, waiting until SkyPilot's jobs controller has it."""
    import copy

    import sky
    from sky import jobs

    task = sky.Task.from_yaml_config(copy.deepcopy(config))  # it consumes the dict it is given
    sky.get(jobs.launch(task, name=name))
