"""The entry point: every config validates, bad values name their field, a run writes what it
promises."""

import json

import jax
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from tiny_run import REPO, load_config, tiny_config, write_pixelless_npz, write_tiny_npz

from resnet_jax import build, errors, main, records, trainer
from resnet_jax.training import checkpoint, metrics

CONFIGS = [
    ("default.py", None),
    ("mnist5k.py", None),
    ("imagenet.py", "resnet18"),
    ("imagenet.py", "resnet50"),
    ("imagenet.py", "resnet50,cosine,batch=1024"),
    ("cifar10.py", "resnet56,epochs=2"),
    ("mnist.py", "mnist"),
    ("mnist.py", "fashion_mnist,epochs=3"),
] + [
    ("cifar10.py", f"{kind}{depth}")
    for kind in ("resnet", "plain")
    for depth in (20, 32, 44, 56, 110)
]


def schema(config):
    return {group: sorted(config[group]) for group in ("data", "optim", "train")}


@pytest.mark.parametrize("name,arg", CONFIGS)
def test_every_config_validates_and_has_the_default_schema(name, arg):
    config = load_config(name, arg)
    build.validate_config(config, device_count=8, process_count=1)
    assert schema(config) == schema(load_config())
    assert {"name", "depth"} <= set(config.model)


def test_config_recipes():
    cifar = load_config("cifar10.py", "resnet110")
    assert (cifar.optim.lr, cifar.optim.boundaries, cifar.optim.scales) == (
        0.01,
        (400, 32_000, 48_000),
        (10.0, 0.1, 0.1),
    )
    assert load_config("cifar10.py", "plain56").model.shortcut == "none"
    imagenet = load_config("imagenet.py", "resnet50,batch=1024")
    steps_per_epoch = 1_281_167 // 1024
    assert (
        imagenet.optim.lr == pytest.approx(0.4)
        and imagenet.optim.warmup_steps == 5 * steps_per_epoch
    )
    assert imagenet.optim.boundaries == tuple(e * steps_per_epoch for e in (30, 60, 80))
    with pytest.raises(ValueError, match="resnet20"):
        load_config("cifar10.py", "resnet21")
    # the paper's optimiser over 3 epochs of 390 steps
    short = load_config("cifar10.py", "plain20,epochs=3")
    assert (short.train.steps, short.train.eval_every, short.optim.schedule) == (
        1170,
        390,
        "cosine",
    )
    assert (short.optim.lr, short.optim.warmup_steps, short.optim.weight_decay) == (0.1, 58, 1e-4)
    assert short.model.shortcut == "none" and short.data.augment == "cifar"
    with pytest.raises(ValueError, match="epochs=N"):
        load_config("cifar10.py", "resnet20,epochs=0")
    fashion = load_config("mnist.py", "fashion_mnist,epochs=2")
    assert (fashion.data.name, fashion.train.steps) == ("fashion_mnist", 936)
    assert fashion.data.manual_dir.endswith("shared/data/fashion_mnist")


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("train.parallel", "dp", "use one of"),
        ("train.dtype", "float16", "use one of"),
        ("data.batch_size", 12, "multiple of the 8 device"),
        ("data.eval_batch_size", 0, "positive multiple"),
        ("data.augment", "autoaugment", "use one of"),
        ("optim.name", "rmsprop", "use one of"),
        ("optim.boundaries", (10, 5), "increasing"),
        ("optim.warmup_steps", 400, r"\[0, train.steps=400\)"),
        ("train.stop_after", 401, r"\[0, train.steps=400\] \(0 runs to the end\)"),
        ("optim.ema", 1.0, "EMA decay"),
        ("model.depth", 21, "config.model: A CIFAR ResNet"),
        ("model.shortcut", "D", "config.model: Unknown shortcut"),
    ],
)
def test_impossible_values_are_rejected_naming_the_field(field, value, message):
    config = load_config()
    config.train.parallel = "pmap"
    group, name = field.split(".")
    config[group][name] = value
    if name == "boundaries":
        config.optim.scales = (0.1, 0.1)
    with pytest.raises(
        ValueError, match=rf"config\.{group}[.:]" + (rf"{name}=" if group != "model" else "")
    ):
        build.validate_config(config, device_count=8, process_count=1)
    with pytest.raises(ValueError, match=message):
        build.validate_config(config, device_count=8, process_count=1)


def test_single_device_mode_refuses_several_processes():
    with pytest.raises(ValueError, match="config.train.parallel='single'"):
        build.validate_config(load_config(), device_count=8, process_count=2)


def test_command_line_overrides_and_misspelt_fields(monkeypatch):
    def parse(*args):
        argv = [__file__, *args, "--workdir=/tmp/unused"]
        monkeypatch.setattr("sys.argv", argv)  # config_flags reads the overrides from sys.argv
        values = flags.FlagValues()
        main.define_flags(values)
        values(argv)
        return values.config

    with flagsaver.flagsaver():
        config = parse(
            f"--config={REPO / 'configs' / 'cifar10.py'}:resnet56",
            "--config.optim.lr=0.2",
            "--config.train.parallel=sharding",
        )
        assert (
            config.model.depth == 56
            and config.optim.lr == 0.2
            and config.train.parallel == "sharding"
        )
    with flagsaver.flagsaver(), pytest.raises(Exception, match="lrr"):
        parse(f"--config={REPO / 'configs' / 'default.py'}", "--config.optim.lrr=0.2")


@pytest.fixture
def compilations():
    """The XLA compilations made while the test runs."""
    events = []

    def listener(event, duration, **kwargs):
        # A compile, or a hit of the tests' compilation cache (conftest.py) standing in for one.
        if event.endswith(("backend_compile_duration", "compile_time_saved_sec")):
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield events
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.parametrize(
    "images,fields,message",
    [
        # A 3x3 stem without padding on 2x2 images: the collapse names the layer and the formula.
        (
            (2, 2, 3),
            {"model.stem_padding": 0},
            r"config.model: Layer 'stem_conv' collapses its feature map to 0: "
            r"input size 2, kernel 3.*output = floor\(",
        ),
        # Activations far beyond the machine's memory: the error names the field's layer.
        (
            (8, 8, 3),
            {"model.stem_padding": 20_000},
            r"config.model: activations need about \d+ GiB .* 'stem_conv'",
        ),
    ],
)
def test_a_bad_shape_fails_from_the_data_sets_info_before_any_data_is_read(
    tmp_path, monkeypatch, compilations, images, fields, message
):
    """The data file's header is valid but its pixels are missing: only the shape error can be
    raised."""
    loads = []
    monkeypatch.setattr(build, "load_data", lambda d: loads.append(d))
    config = tiny_config(
        write_pixelless_npz(tmp_path / "pixelless.npz", images_shape=(96, *images)), **fields
    )
    with pytest.raises(errors.UserError, match=message):
        trainer.run(config, str(tmp_path / "run"))
    assert loads == [] and compilations == [] and not (tmp_path / "run").exists()


def test_a_1x1_map_before_the_last_stage_warns_before_any_data_is_read(
    tmp_path, capsys, compilations
):
    # 8x8 images, whose pixels np.load cannot read
    npz = write_pixelless_npz(tmp_path / "pixelless.npz")
    config = tiny_config(npz, model__stage_strides=(1, 64, 64))
    with pytest.raises(errors.UserError, match="pixelless.npz is not a readable .npz archive"):
        # the warning came first, from the header's shape
        trainer.run(config, str(tmp_path / "run"))
    warnings = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")
    ]
    assert (
        len(warnings) == 1 and "'stage2_block0/conv1' reduces the feature map to 1x1" in warnings[0]
    )
    assert compilations == []


def test_a_run_writes_metrics_events_config_checkpoints_and_resumes(tmp_path):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    config, workdir = tiny_config(npz), tmp_path / "run"
    records.write_run_info(str(workdir), config)
    _, summary = trainer.run(config, str(workdir))
    assert summary["eval/accuracy"] >= 0 and summary["train/loss"] > 0
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    train_rows = [r for r in rows if "train/loss" in r]
    # log_every=2, plus each checkpoint (3, 6)
    assert [r["step"] for r in train_rows] == [
        2,
        3,
        4,
        6,
    ]
    assert {"train/accuracy", "train/learning_rate", "train/images_per_second"} <= set(
        train_rows[0]
    )
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [3, 6]
    events = list(workdir.glob("events.out.tfevents.*"))
    assert events and event_texts(events[0])["config"].count("\n| ") >= 40  # a row per config field
    assert "| optim.lr | 0.1 |" in event_texts(events[0])["config"]
    assert json.load(open(workdir / "config.json")) == json.loads(config.to_json())
    assert "git_revision" in json.load(open(workdir / "run.json"))
    assert checkpoint.Checkpoints(str(workdir / "checkpoints"), keep=3).steps() == [3, 6]

    # the same command again: nothing left to train
    state, again = trainer.run(config, str(workdir))
    assert int(state.step) == 6 and again["eval/accuracy"] == summary["eval/accuracy"]
    assert sum("train/loss" in json.loads(line) for line in open(workdir / "metrics.jsonl")) == len(
        train_rows
    )


def test_stop_after_runs_the_first_steps_of_the_schedule_and_the_same_run_continues_exactly(
    tmp_path,
):
    """train.stop_after=3 of a 6-step cosine run stops evaluated and saved at 3 with the 6-step
    learning rates; rerun with stop_after=0 it ends where an uninterrupted run ends."""
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    full = tiny_config(npz, train__log_every=1, optim__warmup_steps=0)
    paused = tiny_config(npz, train__log_every=1, optim__warmup_steps=0, train__stop_after=3)
    whole, _ = trainer.run(full, str(tmp_path / "whole"))
    first, summary = trainer.run(paused, str(tmp_path / "paused"))
    assert int(first.step) == 3 and "eval/accuracy" in summary
    assert checkpoint.Checkpoints(str(tmp_path / "paused" / "checkpoints"), keep=3).steps() == [3]
    rates = {
        r["step"]: r["train/learning_rate"]
        for r in map(json.loads, open(tmp_path / "whole" / "metrics.jsonl"))
        if "train/learning_rate" in r
    }
    paused_rates = {
        r["step"]: r["train/learning_rate"]
        for r in map(json.loads, open(tmp_path / "paused" / "metrics.jsonl"))
        if "train/learning_rate" in r
    }
    assert paused_rates == {s: rates[s] for s in (1, 2, 3)}
    # still decaying after step 3: the paused run's rates are the 6-step schedule's
    assert rates[3] > rates[5]
    continued, _ = trainer.run(full, str(tmp_path / "paused"))
    assert int(continued.step) == 6
    for a, b in zip(
        jax.tree.leaves((whole.params, whole.batch_stats)),
        jax.tree.leaves((continued.params, continued.batch_stats)),
    ):
        np.testing.assert_array_equal(a, b)


def event_texts(path) -> dict[str, str]:
    """The text summaries of a TensorBoard event file, by tag (without TensorBoard's
    '/text_summary')."""
    import tensorflow as tf

    texts = {}
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        for value in tf.compat.v1.Event.FromString(record).summary.value:
            if value.metadata.plugin_data.plugin_name == "text":
                texts[value.tag.removesuffix("/text_summary")] = (
                    tf.make_ndarray(value.tensor).item().decode()
                )
    return texts


def test_one_override_makes_a_short_run_the_warmup_follows_the_steps(monkeypatch):
    """`--config.train.steps=30` alone is a valid run: the default config's warmup is derived from
    the steps."""
    with flagsaver.flagsaver():
        argv = [
            __file__,
            f"--config={REPO / 'configs' / 'default.py'}",
            "--config.train.steps=30",
            "--workdir=/x",
        ]
        monkeypatch.setattr("sys.argv", argv)
        values = flags.FlagValues()
        main.define_flags(values)
        values(argv)
        config = values.config
        assert (config.train.steps, config.optim.warmup_steps) == (30, 3)
        build.validate_config(config, device_count=1, process_count=1)
    assert load_config().optim.warmup_steps == 50  # an eighth of the default 400 steps


def test_divergence_stops_the_run_and_names_the_step(tmp_path):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    config = tiny_config(npz, optim__lr=1e30, train__log_every=1)
    with pytest.raises(FloatingPointError, match=r"loss is (nan|inf) at step \d+"):
        trainer.run(config, str(tmp_path / "run"))
    assert checkpoint.Checkpoints(str(tmp_path / "run" / "checkpoints"), keep=3).steps() == []


def test_bfloat16_run_from_the_config(tmp_path):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    state, summary = trainer.run(
        tiny_config(npz, train__dtype="bfloat16", train__steps=3), str(tmp_path / "run")
    )
    assert summary["train/loss"] == pytest.approx(summary["train/loss"])  # finite
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jax.numpy.dtype("float32")}


def test_progress_line_and_metrics_written_after_a_resume_point_are_dropped(tmp_path):
    line = metrics.progress_line(120, 400, {"loss": 1.23456, "accuracy": 0.5}, 1234.5, 96.0)
    assert line == "step 120/400 (30%) | loss 1.235 | accuracy 0.5 | 1,234 img/s | ETA 1m36s"
    writer = metrics.MetricWriter(str(tmp_path))
    for step in (10, 20, 30):
        writer.write(step, {"train/loss": 1.0})
    writer.close()
    with open(tmp_path / metrics.JSONL, "a") as f:
        f.write('{"step": 40, "train/lo')  # killed mid-line
    metrics.MetricWriter(str(tmp_path), start_step=20).close()
    assert [json.loads(line)["step"] for line in open(tmp_path / metrics.JSONL)] == [10, 20]


@pytest.mark.parametrize(
    "arg",
    [
        "resnet20_fast",
        pytest.param("resnet20_paper", marks=pytest.mark.slow),
        pytest.param("plain56_fast", marks=pytest.mark.slow),
    ],
)
def test_cifar10_recipes_train_a_few_steps_on_a_slice(arg, shared_data, tmp_path):
    """The CIFAR-10 recipes as they are, on 512 real training images, 3 steps (their schedules
    untouched)."""
    cifar = shared_data / "cifar10"
    train_npz, test_npz = (np.load(cifar / f"{split}.npz") for split in ("train", "test"))
    slice_dir = tmp_path / "cifar10_slice"
    slice_dir.mkdir()
    np.savez(
        slice_dir / "train.npz", images=train_npz["images"][:512], labels=train_npz["labels"][:512]
    )
    np.savez(
        slice_dir / "test.npz", images=test_npz["images"][:256], labels=test_npz["labels"][:256]
    )
    config = load_config("cifar10.py", arg)
    assert config.model.shortcut == ("none" if arg.startswith("plain") else "A")
    config.data.path, config.data.eval_batch_size = str(slice_dir), 256
    config.train.update(steps=3, eval_every=3, checkpoint_every=3, log_every=1)
    config.optim.warmup_steps = min(config.optim.warmup_steps, 1)
    config.optim.boundaries, config.optim.scales = (), ()
    build.validate_config(config, device_count=1, process_count=1)
    _, summary = trainer.run(config, str(tmp_path / "run"))
    assert np.isfinite(summary["train/loss"]) and 0 <= summary["eval/accuracy"] <= 1
