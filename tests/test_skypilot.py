"""The SkyPilot launcher, offline: every task it writes passes SkyPilot's own parser with the
resources the flags asked for; submission (SkyPilot's launch replaced by a recorder) makes one
managed job per point and skips the points whose last checkpoint is in the bucket; a point's run
command trains here against the GCS emulator; and SkyPilot's multi-node variables join two local
processes into one run. Nothing here starts SkyPilot's API server."""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from test_cloud import BUCKET, gcs, gcs_env, put_object  # noqa: F401 (gcs: the emulator fixture)
from test_errors import command_env
from test_multihost import free_port
from tiny_run import REPO, TINY_OVERRIDES, write_tiny_npz

from resnet_jax import runtime
from resnet_jax.sweeps import skypilot
from resnet_jax.sweeps.grid import expand

sky = pytest.importorskip("sky")

STRIDE_PADDING = ["--sweep=configs/sweeps/stride_padding.py", "--workdir=gs://b/s"]


def sweep(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "resnet_jax.sweep", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=command_env(),
    )


def parsed(document: dict):
    """sky.Task of a task dict (SkyPilot's parser consumes the dict it is given)."""
    return sky.Task.from_yaml_config(copy.deepcopy(document))


def api_servers() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=30).stdout
    return [line for line in out.splitlines() if "sky.server.server" in line]


def test_the_dry_run_prints_one_task_per_point_each_as_skypilot_parses_it():
    out = sweep(
        "--config=configs/default.py",
        *STRIDE_PADDING,
        "--seeds=0,1",
        "--launcher=sky",
        "--accelerators=tpu-v4-8",
        "--spot",
        "--dry_run",
    )
    assert out.returncode == 0, out.stderr
    documents = list(yaml.safe_load_all(out.stdout))
    assert len(documents) == 16  # 8 points x 2 seeds, seed-major
    names = [d["name"] for d in documents]
    assert len(set(names)) == 16 and names[0] == "stride-padding-seed-0"
    assert names[1] == "stride-padding-model-stem-stride-2-seed-0"
    committed = subprocess.run(
        ["git", "show", "HEAD:configs/default.py"], cwd=REPO, capture_output=True, text=True,
        timeout=30,
    ).stdout  # fmt: skip
    for document in documents:
        task = parsed(document)
        (resources,) = task.resources
        assert resources.accelerators == {"tpu-v4-8": 1} and resources.use_spot
        assert resources.job_recovery["recover_on_exit_codes"] == [3]
        assert resources.job_recovery["max_restarts_on_errors"] == 1
        assert task.num_nodes == 1 and "pip install -q -e '.[tpu]'" in task.setup
        assert task.run.startswith("python3 -m resnet_jax.main --config=configs/default.py ")
        assert task.run.strip().endswith("--distributed")  # the TPU VM's hosts join as one run
        with open(os.path.join(task.workdir, "configs", "default.py")) as shipped:
            assert shipped.read() == committed  # the committed tree, not the working one
    assert "--workdir=gs://b/s/seed=0 " in documents[0]["run"]
    assert "--config.model.stem_stride=2 --config.train.seed=0" in documents[1]["run"]
    assert not api_servers()


def test_gpu_nodes_region_and_zone_become_skypilots_resources():
    out = sweep(
        "--config=configs/default.py",
        *STRIDE_PADDING,
        "--launcher=sky",
        "--accelerators=H100:8",
        "--num_nodes=2",
        "--cloud=gcp",
        "--region=us-central1",
        "--zone=us-central1-a",
        "--max_restarts_on_errors=0",
        "--set=train.steps=50",
        "--dry_run",
    )
    assert out.returncode == 0, out.stderr
    task = parsed(next(yaml.safe_load_all(out.stdout)))
    (resources,) = task.resources
    assert resources.accelerators == {"H100": 8} and not resources.use_spot
    assert (str(resources.cloud), resources.region, resources.zone) == (
        "GCP",
        "us-central1",
        "us-central1-a",
    )
    assert task.num_nodes == 2 and ".[cuda12]" in task.setup
    assert resources.job_recovery["max_restarts_on_errors"] == 0
    assert "--config.train.steps=50" in task.run and task.run.strip().endswith("--distributed")
    one_node = skypilot.task_config("n", ["python3"], skypilot.Resources("H100:1"), "/t")
    assert one_node["run"].strip() == "python3"  # one GPU node: one process, no cluster to find


@pytest.mark.parametrize(
    "args,message",
    [
        (["--workdir=/tmp/local"], "--launcher=sky needs a gs://BUCKET/PATH workdir"),
        (["--workdir=gs://b/s"], "--launcher=sky needs --accelerators"),
        (
            ["--workdir=gs://b/s", "--accelerators=H100:1", "--zone=us-central1-a"],
            "--zone needs --region and --cloud",
        ),
        (
            ["--workdir=gs://b/s", "--accelerators=H100:1", "--set=data.path=/data/c10.npz"],
            "config.data.path=/data/c10.npz: the cloud jobs cannot read a local path",
        ),  # a dry run prints the plan with this as a warning (the test below)
    ],
)
def test_bad_cloud_input_is_one_line_before_anything_is_submitted(args, message):
    out = sweep(
        "--config=configs/default.py", "--sweep=configs/sweeps/depth.py:20", "--launcher=sky", *args
    )
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 2 and last.startswith("error: ") and message in last, out.stderr


def jobs_for(points, workdir="gs://bucket/sweep", resources=None):
    resources = resources or skypilot.Resources("tpu-v4-8", spot=True)
    return skypilot.make_jobs("configs/default.py", points, workdir, "depth", resources, "/tree")


def test_submission_makes_one_managed_job_per_point_and_skips_finished_ones():
    points = expand({"model.depth": [20, 32, 44]})
    jobs = jobs_for(points)
    recorded, lines = [], []
    done = {"gs://bucket/sweep/model.depth=32"}
    submitted = skypilot.submit(
        jobs,
        lambda job: job.workdir in done,
        launch=lambda config, name: recorded.append((name, parsed(config).name)),
        report=lines.append,
    )
    assert recorded == [("depth-model-depth-20",) * 2, ("depth-model-depth-44",) * 2]
    assert [job.name for job in submitted] == ["depth-model-depth-20", "depth-model-depth-44"]
    assert "finished in gs://bucket/sweep/model.depth=32, skipped" in lines[1]


def test_skypilots_errors_name_the_point_and_no_cloud_says_sky_check():
    class NoCloudAccessError(Exception):  # the name SkyPilot's own exception has
        pass

    jobs = jobs_for(expand({"model.depth": [20]}))

    def refuse(error):
        def launch(config, name):
            raise error

        return launch

    with pytest.raises(skypilot.LaunchError, match="run `sky check`") as caught:
        skypilot.submit(jobs, lambda job: False, launch=refuse(NoCloudAccessError("no clouds")))
    assert caught.value.no_cloud
    unavailable = sky.exceptions.ResourcesUnavailableError("tpu-v99-8 is not offered")
    with pytest.raises(skypilot.LaunchError) as caught:
        skypilot.submit(jobs, lambda job: False, launch=refuse(unavailable))
    assert str(caught.value) == "point model.depth=20: SkyPilot: tpu-v99-8 is not offered"


def test_long_point_names_make_short_stable_job_names():
    point = {"model.stage_strides": (1, 1, 2), "model.stem_padding": 0, "optim.lr": 0.05, "x": 1}
    first = skypilot.job_name("stride-padding-on-a-long-sweep-name", {**point, "train.seed": 1})
    again = skypilot.job_name("stride-padding-on-a-long-sweep-name", {**point, "train.seed": 1})
    other = skypilot.job_name("stride-padding-on-a-long-sweep-name", {**point, "train.seed": 2})
    assert first == again and first != other and len(first) <= skypilot.NAME_LENGTH
    assert all(c.isalnum() or c == "-" for c in first)


def test_a_points_run_command_trains_against_the_bucket_and_then_counts_as_finished(gcs, tmp_path):  # noqa: F811
    """The task's own run line (python3 -> this interpreter) on the GCS emulator, a few steps; the
    sweep's finished-check then reads the last checkpoint from the bucket."""
    from tiny_run import load_config

    from resnet_jax.sweep import finished

    npz = write_tiny_npz(tmp_path / "tiny.npz")
    put_object(gcs, "sky/tiny.npz", npz.read_bytes())
    common = {**TINY_OVERRIDES, "data.path": f"gs://{BUCKET}/sky/tiny.npz", "train.steps": 4}
    common.update({"train.checkpoint_every": 2, "train.eval_every": 2})
    points = expand({"model.shortcut": ["A"]})
    resources = skypilot.Resources("H100:1")
    (job,) = skypilot.make_jobs(
        "configs/default.py", points, f"gs://{BUCKET}/sky", "s", resources, "/t", common
    )
    task = parsed(job.config)
    command = task.run.split()
    assert command[0] == "python3"
    config = load_config()
    for field, value in common.items():
        group, name = field.split(".")
        config[group][name] = value
    assert not finished(config, points[0], job.workdir)
    run = subprocess.run(
        [sys.executable, *command[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**gcs_env(gcs), "RESNET_JAX_VERBOSE": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    env = gcs_env(gcs)
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, json; sys.path.insert(0, 'tests'); from tiny_run import load_config\n"
            "from resnet_jax.sweep import finished\n"
            f"common = {common!r}\nconfig = load_config()\n"
            "for f, v in common.items():\n    g, n = f.split('.'); config[g][n] = v\n"
            f"print(finished(config, {points[0]!r}, {job.workdir!r}))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert check.stdout.strip().splitlines()[-1] == "True", check.stderr[-2000:]


def test_skypilots_node_variables_map_to_jax_distributed():
    env = {
        "SKYPILOT_NUM_NODES": "2",
        "SKYPILOT_NODE_RANK": "1",
        "SKYPILOT_NODE_IPS": "10.0.0.7\n10.0.0.8\n",
    }
    assert runtime.skypilot_cluster(env) == {
        "coordinator_address": "10.0.0.7:8476",
        "num_processes": 2,
        "process_id": 1,
    }
    assert runtime.skypilot_cluster({"SKYPILOT_NUM_NODES": "1"}) is None
    assert runtime.skypilot_cluster({}) is None


def test_two_processes_given_skypilots_variables_join_one_run(tmp_path):
    """main --distributed on 2 'nodes' (127.0.0.1 twice, one CPU device each): one run of 2
    processes, its checkpoints written once (the slow test below compares it with the explicit
    flags' run)."""
    workdir = tmp_path / "sky"
    two_sky_processes(tmp_path, workdir)
    assert json.loads((workdir / "run.json").read_text())["processes"] == 2
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def two_sky_processes(tmp_path, workdir):
    return run_two(tmp_path, workdir, lambda rank, port: (["--distributed"], sky_env(rank, port)))


def sky_env(rank: int, port: int) -> dict:
    return {
        "SKYPILOT_NUM_NODES": "2",
        "SKYPILOT_NODE_IPS": "127.0.0.1\n127.0.0.1",
        "SKYPILOT_NODE_RANK": str(rank),
        "RESNET_JAX_COORDINATOR_PORT": str(port),
    }


def run_two(tmp_path, workdir, extra) -> list[float]:
    """main in 2 processes on the tiny set (sharding), `extra(rank, port)` giving each its flags
    and environment; the train losses process 0 logged."""
    npz = tmp_path / "tiny.npz"
    if not npz.exists():
        write_tiny_npz(npz)
    flags = [f"--config.{k}={v}" for k, v in {**TINY_OVERRIDES, "data.path": str(npz)}.items()]
    flags = ["--config=configs/default.py", *flags, "--config.train.parallel=sharding"]
    env = {**command_env(), "JAX_PLATFORMS": "cpu"}
    port = free_port()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "resnet_jax.main",
                f"--workdir={workdir}",
                *flags,
                *extra(rank, port)[0],
            ],
            cwd=REPO,
            env={**env, **extra(rank, port)[1]},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    try:
        outputs = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [row["train/loss"] for row in rows if "train/loss" in row]


@pytest.mark.slow  # two more processes: the same run joined by --coordinator_address/--process_id
def test_two_processes_given_skypilots_variables_train_as_the_explicit_flags_do(tmp_path):
    sky_run = two_sky_processes(tmp_path, tmp_path / "sky")

    def explicit(rank, port):
        flags = [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
        return [*flags, f"--process_id={rank}"], {}

    flag_run = run_two(tmp_path, tmp_path / "flags", explicit)
    assert sky_run == flag_run and np.all(np.isfinite(sky_run))


def test_docs_cloud_md_shows_what_the_dry_run_prints():
    text = (REPO / "docs" / "cloud.md").read_text()
    section = text[text.index("## 3. Look at the plan") :]
    command = next(line for line in section.splitlines() if line.startswith("python -m"))
    shown = section[section.index("```yaml\n") + 8 : section.index("---\n")]
    out = sweep(*command.split()[3:])
    assert out.returncode == 0, out.stderr
    printed = out.stdout[: out.stdout.index("---\n")]
    workdir = next(line for line in printed.splitlines() if line.startswith("workdir: "))
    assert printed.replace(workdir, "workdir: /home/you/.cache/resnet_jax/sky/REVISION") == shown
    readme = (REPO / "README.md").read_text()
    assert command in readme  # the README's cloud command is the walk-through's


def test_the_issues_cifar10_dry_run_prints_one_parsed_task_per_point():
    """The CIFAR-10 config reads ../shared/data locally: a dry run warns so and prints the plan."""
    out = sweep(
        "--config=configs/cifar10.py:resnet20_fast", *STRIDE_PADDING, "--launcher=sky",
        "--accelerators=tpu-v4-8", "--spot", "--dry_run",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "warning: config.data.path=" in out.stderr
    tasks = [parsed(document) for document in yaml.safe_load_all(out.stdout)]
    assert len(tasks) == 8 and all(t.num_nodes == 1 for t in tasks)
