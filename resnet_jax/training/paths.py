"""Run paths: a local folder or an object-store URI (`gs://BUCKET/RUN`, any `etils.epath` scheme),
one type.

    # or "~/runs/resnet20": expanded and made absolute
    workdir = run_path("gs://my-bucket/runs/resnet20")
    check_writable(workdir)  # WorkdirUnusable naming the path and what is missing
    write_text(workdir / "config.json", text)             # whole or not at all

Every file a run writes goes through `etils.epath.Path`, which hands `gs://` to fsspec (`gcsfs`):
the entry points set `EPATH_USE_TF=false` (runtime.setup), so a run takes the path its tests take
against a GCS server whether TensorFlow is installed or not; orbax takes the same paths, and its
arrays go through tensorstore. Object stores have no rename and no append: a whole-file write is
atomic there by itself (an upload replaces the object or fails), so the local
temporary-file-and-rename dance is only needed for local folders.
"""

from __future__ import annotations

import os
import uuid

from etils import epath


class WorkdirUnusable(RuntimeError):
    """The workdir cannot be written: its message names the path and what is missing."""


def run_path(path: str | os.PathLike) -> epath.Path:
    """`path` as an epath.Path: URIs as given (trailing '/' dropped), local paths with ~ expanded,
    absolute."""
    text = os.fspath(path)
    if is_remote(text):
        return epath.Path(text.rstrip("/"))
    return epath.Path(os.path.abspath(os.path.expanduser(text)))


def is_remote(path: str | os.PathLike) -> bool:
    """True for an object-store URI (gs://, s3://, ...), False for a local path."""
    return "://" in os.fspath(path)


def write_text(path: epath.Path, text: str) -> None:
    """Write the whole file or leave the old one: a kill midway never leaves half a file behind."""
    if is_remote(path):
        path.write_text(text)
        return
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def make_dirs(path: epath.Path) -> None:
    """mkdir -p for a local folder; nothing for a URI: object stores have no folders, and a `mkdir`
    through gcsfs would create a missing bucket (a typo in its name would make a new one) instead of
    failing."""
    if not is_remote(path):
        path.mkdir(parents=True, exist_ok=True)


def check_writable(workdir: epath.Path) -> None:
    """Create `workdir` if needed and write, read and delete a probe file in it; raise
    WorkdirUnusable with one line naming the path and the reason (a missing bucket, missing
    credentials, no permission) otherwise.

    Run before the data loads and anything compiles, so a typo in a bucket name costs seconds, not a
    compile. The folders it had to create are removed again.
    """
    flag = f"--workdir={workdir}"
    if workdir.exists() and not workdir.is_dir():
        raise WorkdirUnusable(
            f"{flag}: is a file; the workdir must be a directory (a new one, or the workdir of "
            f"a run to resume)"
        )
    probe = workdir / f".write_probe.{uuid.uuid4().hex[:8]}"
    missing = (
        [] if is_remote(workdir) else [p for p in [workdir, *workdir.parents] if not p.exists()]
    )
    try:
        make_dirs(workdir)
        probe.write_text("ok")
        probe.unlink()
    except Exception as error:  # noqa: BLE001 -- each storage library raises its own types
        raise WorkdirUnusable(
            f"{flag}: cannot write there ({describe_storage_error(workdir, error)})"
        ) from None
    finally:
        for (
            folder
        ) in missing:  # leave no trace: a run that fails later on bad input has written nothing
            if folder.exists():
                folder.rmdir()


def describe_storage_error(path: epath.Path, error: BaseException) -> str:
    """What a storage error means for the user, in a phrase with the fix: bucket, credentials,
    permission."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    lowered = text.lower()
    bucket = os.fspath(path).split("/")[2] if is_remote(path) else None
    if bucket and (
        "nosuchbucket" in lowered
        or "bucket does not exist" in lowered
        or "404" in lowered
        or isinstance(error, FileNotFoundError)
    ):
        return (
            f"the bucket gs://{bucket} does not exist or is not visible to this account; create it "
            "with "
            f"`gcloud storage buckets create gs://{bucket}` or fix the name"
        )
    if bucket and any(
        word in lowered
        for word in (
            "credential",
            "defaultcredentialserror",
            "401",
            "unauthenticated",
            "could not automatically determine",
        )
    ):
        return (
            "no Google Cloud credentials found; run `gcloud auth application-default login`, or on "
            "a VM give "
            "its service account access to the bucket"
        )
    if any(
        word in lowered for word in ("403", "permission", "forbidden", "access denied", "read-only")
    ):
        return (
            f"permission denied ({text[:160]}); give this account write access"
            if bucket
            else f"permission denied ({text[:160]})"
        )
    if "no space left" in lowered:
        return "no space left on the device"
    return text[:240]
