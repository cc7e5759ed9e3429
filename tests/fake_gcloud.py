"""A fake `gcloud` for the TPU launcher's tests: records every call and simulates TPU VMs and their
queues.

    FAKE_GCLOUD_DIR=DIR python tests/fake_gcloud.py compute tpus tpu-vm create NAME --zone=Z ...

(tests/test_cloud_launcher.py puts a `gcloud` script that runs this first on PATH). In DIR:
    calls.jsonl     each call's arguments, a JSON list a line, in order
    outcomes.json   {point: [outcome of attempt 1, of attempt 2, ...]}: an exit status, "preempt"
    (the VM is
                    preempted while the point trains) or "hang" (it trains on and on); the last one
                    repeats; a
                    point not listed exits 0
    create_errors.json  {tpu: error}: that TPU's create fails with gcloud's line for it
    world.json      the fake's state: the VMs (state, queued points, finished points) and each
    point's attempts
    gs/             what `gcloud storage cp` copied to gs://

A VM's queue advances one point per status poll. Zones and accelerator types outside the few below
fail as
gcloud does, with an `ERROR: (gcloud.compute.tpus.tpu-vm.create) ...` line on stderr.
"""

import fcntl
import json
import os
import re
import shutil
import sys
from pathlib import Path

ZONES = ("us-central2-b", "us-west4-a", "europe-west4-a")
ACCELERATOR_TYPES = ("v4-8", "v4-16", "v4-32", "v5litepod-8")


def fail(command: str, message: str, status: int = 1) -> None:
    print(f"ERROR: (gcloud.compute.tpus.tpu-vm.{command}) {message}", file=sys.stderr)
    raise SystemExit(status)


def read(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def tpu_vm(verb: str, name: str, options: dict, world: dict, root: Path) -> None:
    vms, vm = world["vms"], world["vms"].get(name)
    if verb == "create":
        zone, accelerator = options.get("--zone"), options.get("--accelerator-type")
        if zone not in ZONES:
            fail("create", f"NOT_FOUND: Location {zone} is not found or access is unauthorized.")
        if accelerator not in ACCELERATOR_TYPES:
            fail(
                "create",
                f"INVALID_ARGUMENT: Accelerator type {accelerator} is not available in zone "
                f"{zone}.",
            )
        if name in read(root / "create_errors.json", {}):
            fail("create", read(root / "create_errors.json", {})[name])
        if vm:
            fail(
                "create",
                f"ALREADY_EXISTS: Resource 'projects/p/locations/{zone}/nodes/{name}' already "
                "exists",
            )
        vms[name] = {"state": "READY", "queue": [], "finished": {}}
        return
    if vm is None:
        fail(
            verb,
            f"NOT_FOUND: Resource 'projects/p/locations/{options.get('--zone')}/nodes/{name}' was "
            "not found",
        )
    if verb == "delete":
        del vms[name]
    elif verb == "describe":
        print(vm["state"])
    elif vm["state"] != "READY":
        fail(verb, "[/usr/bin/ssh] exited with return code [255].", 255)
    elif verb == "ssh":
        ssh(options["--command"], vm, world, root)


def ssh(command: str, vm: dict, world: dict, root: Path) -> None:
    if "setsid" in command:  # the queue: its points from their --workdir=.../POINT arguments
        vm["queue"] = list(
            dict.fromkeys(re.findall(r"--workdir=\S+/([A-Za-z0-9._=,+-]+)", command))
        )
        for point in vm["queue"]:
            vm["finished"].pop(point, None)
    elif (
        "queue.pid" in command
    ):  # a status poll: the next point of the queue finishes (or is preempted)
        next_point = next((p for p in vm["queue"] if p not in vm["finished"]), None)
        if next_point:
            attempt = world["attempts"].get(next_point, 0)
            world["attempts"][next_point] = attempt + 1
            outcomes = read(root / "outcomes.json", {}).get(next_point, [0])
            outcome = outcomes[min(attempt, len(outcomes) - 1)]
            if outcome == "preempt":
                vm["state"] = "PREEMPTED"
                fail("ssh", "[/usr/bin/ssh] exited with return code [255].", 255)
            if outcome != "hang":
                vm["finished"][next_point] = f"{outcome} 7"
        for point, status in vm["finished"].items():
            print(f"{point} {status}")
        running = any(p not in vm["finished"] for p in vm["queue"])
        print("queue: running" if running else "queue: ended")


def main(args: list[str]) -> None:
    root = Path(os.environ["FAKE_GCLOUD_DIR"])
    with open(root / "calls.jsonl", "a") as calls:
        fcntl.flock(calls, fcntl.LOCK_EX)  # the launcher's threads call at once: one call at a time
        calls.write(json.dumps(args) + "\n")
        calls.flush()
        world = read(root / "world.json", {"vms": {}, "attempts": {}})
        try:
            if args[:2] == ["storage", "cp"]:
                target = root / "gs" / args[3].removeprefix("gs://")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(args[2], target)
            elif args[:3] == ["compute", "tpus", "tpu-vm"]:
                options = dict(a.split("=", 1) for a in args[5:] if a.startswith("--") and "=" in a)
                tpu_vm(args[3], args[4], options, world, root)
            else:
                fail(args[0] if args else "", f"the fake gcloud does not know {args}")
        finally:
            (root / "world.json").write_text(json.dumps(world))


if __name__ == "__main__":
    main(sys.argv[1:])
