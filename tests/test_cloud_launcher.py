"""The TPU launcher's whole lifecycle against a fake `gcloud` (tests/fake_gcloud.py) that records its calls and
simulates VMs: the recorded sequence of each TPU (create, ship, install, run, wait, delete), a failed point that
does not block the next, a preempted VM created again and its point rerun, --keep, the sweep's status file,
gcloud's error passed on in one line, and the dry run that docs/cloud.md shows."""
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

import pytest

from resnet_jax.sweeps import tpu
from resnet_jax.sweeps.grid import expand
from tiny_run import REPO

ZONE = "us-central2-b"
WORKDIR = "gs://bucket/sweep"
CONFIG = "configs/default.py"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A directory holding the fake gcloud's record and state; its `gcloud` comes first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "gcloud"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {REPO / 'tests' / 'fake_gcloud.py'} \"$@\"\n")
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
        labels.append(args[3] if args[3] != "ssh" else
                      "unpack" if "tar -xzf" in command else "install" if "pip install -e" in command else
                      "run" if "setsid nohup" in command else "poll" if "queue.pid" in command else command)
    return labels


def sweep(fake, depths, tpus, outcomes=None, **options):
    """Run the launcher on the fake, as --launcher=tpu does; returns the points' statuses."""
    (fake / "outcomes.json").write_text(json.dumps(outcomes or {}))
    jobs = tpu.make_jobs(str(REPO / CONFIG), expand({"model.depth": depths}), WORKDIR)
    return tpu.run_sweep(jobs, tpus, tpu.Cloud(ZONE), workdir=WORKDIR, status_file=str(fake / "status.json"),
                         **{"poll_seconds": 0, **options})


BRING_UP = ["create", "scp", "unpack", "install", "run"]


def test_each_tpu_runs_the_lifecycle_in_order_and_a_failed_point_does_not_block_the_next(fake, capsys):
    statuses = sweep(fake, [20, 32, 44], ["tpu-a", "tpu-b"], outcomes={"model.depth=20": [1]})
    # tpu-a has 20 and 44: one point finishes per poll; tpu-b has 32.
    assert steps(fake, "tpu-a") == [*BRING_UP, "describe", "poll", "describe", "poll", "delete"]
    assert steps(fake, "tpu-b") == [*BRING_UP, "describe", "poll", "delete"]
    create = next(c for c in calls(fake) if c[3:5] == ["create", "tpu-a"])
    assert f"--zone={ZONE}" in create and "--accelerator-type=v4-8" in create
    assert "--version=tpu-ubuntu2204-base" in create
    assert "--spot" not in create
    scp = next(c for c in calls(fake) if c[3:5] == ["scp", "tpu-a"])
    assert "--worker=all" in scp and scp[6].endswith(".tar.gz") and os.path.getsize(scp[6]) > 0  # git archive
    run = next(c for c in calls(fake) if c[3:5] == ["ssh", "tpu-a"] and "setsid" in c[-1])[-1]
    assert "; start=$SECONDS; python3 -m resnet_jax.main --config=configs/default.py" in run  # `;`, not `&&`
    assert run.index(f"--workdir={WORKDIR}/model.depth=20") < run.index(f"--workdir={WORKDIR}/model.depth=44")
    assert "model.depth=32" not in run
    assert statuses["model.depth=20"] == {"status": "failed", "tpu": "tpu-a", "exit_status": 1, "seconds": 7.0,
                                          "log": f"{WORKDIR}/model.depth=20/logs/",
                                          "reason": f"exit status 1; its log is in {WORKDIR}/model.depth=20/logs/"}
    assert statuses["model.depth=44"]["status"] == statuses["model.depth=32"]["status"] == "done"
    assert statuses["model.depth=32"]["tpu"] == "tpu-b"
    written = json.loads((fake / "status.json").read_text())
    assert written["workdir"] == WORKDIR and written["points"] == statuses and len(written["revision"]) == 40
    uploaded = fake / "gs" / "bucket" / "sweep" / "sweep_status.json"
    assert json.loads(uploaded.read_text()) == written  # the copy in the workdir, made on every change
    err = capsys.readouterr().err
    assert f"error: model.depth=20 on tpu-a: exit status 1; its log is in {WORKDIR}/model.depth=20/logs/" in err


def test_a_preempted_vm_is_created_again_and_its_unfinished_points_rerun(fake):
    statuses = sweep(fake, [20, 32], ["tpu-a"], outcomes={"model.depth=32": ["preempt", 0]})
    # 20 finishes; 32 is cut by the preemption (the poll's ssh fails, the next describe says PREEMPTED); the VM
    # is deleted and created again, shipped, installed, and only 32 runs again (main resumes its checkpoint).
    assert steps(fake, "tpu-a") == [*BRING_UP, "describe", "poll", "describe", "poll", "describe", "delete",
                                    *BRING_UP, "describe", "poll", "delete"]
    runs = [c[-1] for c in calls(fake) if c[3] == "ssh" and "setsid" in c[-1]]
    assert "model.depth=20" in runs[0] and "model.depth=20" not in runs[1] and "model.depth=32" in runs[1]
    assert statuses["model.depth=20"]["status"] == "done" and "retries" not in statuses["model.depth=20"]
    assert statuses["model.depth=32"]["status"] == "done" and statuses["model.depth=32"]["retries"] == 1


def test_a_point_preempted_more_often_than_max_retries_fails_saying_so(fake):
    statuses = sweep(fake, [20], ["tpu-a"], outcomes={"model.depth=20": ["preempt"]}, max_retries=1)
    assert steps(fake, "tpu-a").count("create") == 2 and steps(fake, "tpu-a")[-1] == "delete"
    assert statuses["model.depth=20"]["status"] == "failed"
    assert statuses["model.depth=20"]["reason"] == "the TPU VM was PREEMPTED, 2 times; rerun the sweep to resume it"


def test_a_tpu_whose_create_fails_does_not_stop_the_others(fake, capsys):
    error = "RESOURCE_EXHAUSTED: There is no more capacity in the zone"
    (fake / "create_errors.json").write_text(json.dumps({"tpu-a": error}))
    statuses = sweep(fake, [20, 32], ["tpu-a", "tpu-b"])
    assert steps(fake, "tpu-a") == ["create", "delete"]  # delete: whatever a failed create left, nothing bills
    assert steps(fake, "tpu-b") == [*BRING_UP, "describe", "poll", "delete"]
    assert statuses["model.depth=20"]["status"] == "failed" and statuses["model.depth=32"]["status"] == "done"
    line = f"error: model.depth=20 on tpu-a: create failed: ERROR: (gcloud.compute.tpus.tpu-vm.create) {error}"
    assert line in capsys.readouterr().err.splitlines()


def test_keep_leaves_the_vms_and_a_rerun_reuses_them_skipping_done_points(fake, capsys):
    statuses = sweep(fake, [20, 32], ["tpu-a"], outcomes={"model.depth=32": [1, 0]}, keep=True)
    assert "delete" not in steps(fake, "tpu-a")
    assert [statuses[f"model.depth={d}"]["status"] for d in (20, 32)] == ["done", "failed"]
    # The same sweep again: 20 is done and skipped; the kept VM is reused (create says ALREADY_EXISTS).
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
    assert steps(fake, "tpu-a")[:6] == [*BRING_UP, "describe"] and steps(fake, "tpu-a")[-1] == "delete"
    record = json.loads((fake / "status.json").read_text())["points"]["model.depth=20"]
    assert record["status"] == "stopped" and "rerun the same command to resume" in record["reason"]


def command(*args):
    """python -m resnet_jax.sweep ARGS in the checkout (the fake gcloud on PATH where the test put it)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "TMPDIR": tempfile.gettempdir()}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "resnet_jax.sweep", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=env)


def sweep_args(tmp_path, *extra):
    sweep_file = tmp_path / "depth.py"
    sweep_file.write_text("def get_sweep(arg=None):\n    return {'model.depth': [20, 32, 44]}\n")
    return [f"--config={CONFIG}", f"--sweep={sweep_file}", "--launcher=tpu", "--tpus=tpu-a,tpu-b", *extra]


def test_unknown_zone_is_gclouds_error_with_the_points_name_one_line_each(fake, tmp_path):
    out = command(*sweep_args(tmp_path, f"--workdir={WORKDIR}", "--zone=us-nowhere1-a", "--poll_seconds=0",
                              f"--status_file={tmp_path / 'status.json'}"))
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if not line.startswith("warning: uncommitted")]
    gcloud = "ERROR: (gcloud.compute.tpus.tpu-vm.create) NOT_FOUND: Location us-nowhere1-a is not found"
    for point, name in (("model.depth=20", "tpu-a"), ("model.depth=32", "tpu-b"), ("model.depth=44", "tpu-a")):
        assert any(line.startswith(f"error: {point} on {name}: create failed: {gcloud}") for line in lines), lines
    assert lines[-1].startswith("error: 3 of 3 points did not finish") and len(lines) == 4


def test_a_local_workdir_is_refused_for_the_tpu_launcher(tmp_path):
    out = command(*sweep_args(tmp_path, f"--workdir={tmp_path}/w", f"--zone={ZONE}", "--dry_run"))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().endswith("--launcher=tpu needs a gs://BUCKET/PATH workdir: the TPU VMs write their "
                                       "checkpoints and logs there, and it outlives them")


def dry_run(tmp_path, *extra):
    out = command(*sweep_args(tmp_path, f"--workdir={WORKDIR}", f"--zone={ZONE}", "--dry_run", *extra))
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_dry_run_prints_create_install_detached_run_wait_and_delete_for_every_tpu(tmp_path):
    lines = dry_run(tmp_path, "--spot")
    assert lines[0].startswith("git -C ") and " archive --format=tar.gz " in lines[0]
    assert lines[-1].startswith(f"gcloud storage cp sweep_status-bucket_sweep.json {WORKDIR}/sweep_status.json")
    for name in ("tpu-a", "tpu-b"):
        mine = [line for line in lines if line.startswith("gcloud compute tpus tpu-vm ") and f" {name} " in line]
        verbs = [line.split()[4] for line in mine]
        assert verbs == ["create", "scp", "ssh", "ssh", "ssh", "describe", "ssh", "delete"]
        assert "--accelerator-type=v4-8 --version=tpu-ubuntu2204-base --spot" in mine[0]
        assert "python3 -m pip install -e" in mine[3] and "--worker=all" in mine[3]
        assert "setsid nohup bash -c" in mine[4] and "--worker=all" in mine[4]
        assert "value(state)" in mine[5] and "--worker=0" in mine[6] and mine[7].endswith("--quiet")
    assert not any(" tpu-vm delete " in line for line in dry_run(tmp_path, "--keep"))


def test_docs_cloud_md_shows_what_the_dry_run_prints():
    """docs/cloud.md quotes a dry run: its revision and temporary folder aside, what the launcher prints today."""
    text = (REPO / "docs" / "cloud.md").read_text()
    block = next(b for b in re.findall(r"```\n(.*?)```", text, re.S) if b.startswith("$ python -m resnet_jax.sweep"))
    first, _, expected = block.partition("\n")
    out = command(*shlex.split(first)[4:])  # after "$ python -m resnet_jax.sweep"
    assert out.returncode == 0, out.stderr
    printed = re.sub(r"\b[0-9a-f]{40}\b", "REVISION", out.stdout).replace(tempfile.gettempdir(), "/tmp")
    printed = re.sub(r"\b[0-9a-f]{12}\b", "REVISION", printed).replace(str(REPO), ".")
    assert expected == printed


def test_the_vm_side_scripts_run_in_bash_a_failed_point_does_not_stop_the_next(fake, tmp_path):
    """What the ssh commands run on a worker, run here by bash (HOME a temporary folder, the fake gcloud for the
    log upload): the detached queue, its exit statuses, and the poll that reads them."""
    (tmp_path / "resnet_jax").mkdir()
    jobs = [tpu.Job("model.depth=20", f"{WORKDIR}/model.depth=20", ["sh", "-c", "echo training 20; exit 1"]),
            tpu.Job("model.depth=32", f"{WORKDIR}/model.depth=32", ["sh", "-c", "sleep 1; echo training 32"])]
    cloud = tpu.Cloud(ZONE)
    env = {**os.environ, "HOME": str(tmp_path)}

    def on_worker(command):
        script = next(a for a in command if a.startswith("--command=")).removeprefix("--command=")
        return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=10)

    assert on_worker(tpu.run_command("tpu-a", cloud, jobs)).returncode == 0  # returns at once: detached
    finished, running = tpu.parse_statuses(on_worker(tpu.statuses_command("tpu-a", cloud)).stdout)
    assert running and "model.depth=32" not in finished
    for _ in range(100):
        finished, running = tpu.parse_statuses(on_worker(tpu.statuses_command("tpu-a", cloud)).stdout)
        if not running:
            break
        time.sleep(0.1)
    assert not running and {name: code for name, (code, _) in finished.items()} == {
        "model.depth=20": 1, "model.depth=32": 0}
    assert (tmp_path / "sweep_logs" / "model.depth=32.log").read_text() == "training 32\n"
    uploads = [c for c in calls(fake) if c[:2] == ["storage", "cp"]]
    assert [c[3] for c in uploads] == [f"{WORKDIR}/model.depth={d}/logs/{socket.gethostname()}.log" for d in (20, 32)]
    assert (fake / "gs" / "bucket" / "sweep" / "model.depth=20" / "logs" / f"{socket.gethostname()}.log"
            ).read_text() == "training 20\n"
