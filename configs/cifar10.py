"""CIFAR-10 with the ResNets and plain nets of He et al. 2015 (section 4.2): the paper's recipe, or
a short one.

    python -m resnet_jax.main --config=configs/cifar10.py:resnet20
    --workdir=/tmp/runs/cifar10_resnet20
    python -m resnet_jax.main --config=configs/cifar10.py:resnet20,epochs=2
    --workdir=/tmp/runs/c10_r20_e2
    python -m resnet_jax.main --config=configs/cifar10.py:resnet20_fast
    --workdir=/tmp/runs/c10_r20_fast

Variants by arg: resnet20, resnet32, resnet44, resnet56, resnet110 (shortcut A) and plain20 ...
plain110. The paper's recipe: SGD lr 0.1, momentum 0.9, weight decay 1e-4 (on every weight, as in
the paper), batch 128, 64k steps with lr / 10 at 32k and 48k; 4-pixel pad, random 32x32 crop and
horizontal flip; per-channel normalisation. ResNet-110 starts at lr 0.01 until step 400, then 0.1
(the paper's warm-up). Unlike the paper we train on all 50k images (no 45k/5k split) and report the
test set. Paper test error: resnet20 8.75%, resnet56 6.97%, resnet110 6.43%. On 2 CPU cores this
takes days; on one GPU tens of minutes.
"_paper" after the
name (resnet20_paper) names this recipe explicitly. Its first 5 epochs here
(--config.train.stop_after=1950, which keeps the 64k-step schedule; the same command with
stop_after=0 continues): test accuracy 51.5, 66.2, 65.4, 67.9, 76.9% after epochs 1-5 at the
constant lr 0.1, ~14 min on 2 AMD EPYC (Zen 3) cores
(experiments/results/paper_cifar10_schedule.md): a fast, noisy start, as Fig. 6's curves before the
first lr division at 32k.

",epochs=N" is the short budget for a CPU: the same optimiser, data and augmentation, N epochs (390
steps of 128 each) with a linear warmup over the first 5% of steps and a cosine decay to 0,
evaluated every epoch. experiments/results/cifar10.md has what it reaches (ResNet-20, 2 epochs) and
the README its wall time.

"_fast" after the name (resnet20_fast, plain56_fast, ...) is the CPU-budget recipe: the same
architecture and data, 40 epochs (",epochs=N" for others) of Nesterov SGD with a warmup over the
first 5% of steps (2 epochs of the 40) and a cosine decay, weight decay 5e-4, label smoothing 0.1
and an EMA of the weights (0.999 at 40 epochs, a horizon of 1/15.6 of the run), evaluated and
checkpointed every epoch. Measured (experiments/results/paper_cifar10.md, seeds 0 and 1, ~1.5 h each
on 2 Zen 4 cores shared with other work): ResNet-20 91.71% and 91.39% test accuracy, mean 91.55%
(8.45% error, the paper's 8.75% after ~164 epochs); 92.25% / 92.19% with flip test-time
augmentation. All four levers off (--config.optim.nesterov=False
--config.optim.weight_decay=1e-4 --config.optim.label_smoothing=0.0 --config.optim.ema=0.0, seed
0): 89.72% (experiments/results/paper_cifar10_levers.md), the same 3.8% train error in the last
epoch: together they add ~1.8 points of test accuracy. Each alone is not measured; the EMA's share
is small (raw weights 91.68% / 91.35%), as the cosine decay already ends at lr 0. Seed 1:
--config.train.seed=1
--config.data.seed=1.

Data: data.path is ../shared/data/cifar10 (train.npz, test.npz) beside the checkout. For TFDS's
prepared
'cifar10' instead: --config.data.name=cifar10 --config.data.path= (empty)
[--config.data.data_dir=DIR].
"""

import os
import re
import runpy

# configs/base.py, read from beside this file (configs are files loaded by path, not a package).
base = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py"))
SHARED_DATA = base["SHARED_DATA"]  # ../shared/data beside the checkout
VARIANT = re.compile(
    r"^(?P<kind>resnet|plain)(?P<depth>20|32|44|56|110)(?P<recipe>_fast|_paper)?"
    r"(,epochs=(?P<epochs>[1-9][0-9]*))?$"
)
FAST_EPOCHS = 40
TRAIN_IMAGES = 50_000
BATCH_SIZE = 128


def get_config(arg="resnet20"):
    match = VARIANT.match(arg or "resnet20")
    if match is None:
        raise ValueError(
            f"configs/cifar10.py:{arg}: use resnet20|32|44|56|110 or plain20|32|44|56|110, then "
            f"optionally '_fast' (the CPU-budget recipe) or '_paper', then optionally ',epochs=N'."
        )
    depth = int(match["depth"])
    # 390: the partial last batch of an epoch is dropped
    steps_per_epoch = TRAIN_IMAGES // BATCH_SIZE
    config = base["get_config"]()
    config.model.update(
        name=f"cifar_{match['kind']}",
        depth=depth,
        shortcut="A" if match["kind"] == "resnet" else "none",
    )
    config.data.update(
        name="npz", path=base["shared_data"]("cifar10"), batch_size=BATCH_SIZE, eval_batch_size=1000
    )
    # The paper's recipe (section 4.2); the short ones below replace its schedule.
    config.optim.update(
        lr=0.1,
        weight_decay=1e-4,
        schedule="step",
        warmup_steps=0,
        boundaries=(32_000, 48_000),
        scales=(0.1, 0.1),
    )
    config.train.update(steps=64_000, eval_every=2_000, checkpoint_every=2_000, log_every=100)
    # the CPU-budget recipe: same architecture, a schedule tuned for 40 epochs
    if match["recipe"] == "_fast":
        epochs = int(match["epochs"] or FAST_EPOCHS)
        steps = epochs * steps_per_epoch
        # Warmup over the first 5% of steps, and an EMA whose horizon (1 / (1 - decay) steps) is
        # 1/15.6 of the run: 2 epochs and 0.999 at 40 epochs; a shorter budget scales both (a 0.999
        # EMA over 3 epochs would still average the first, untrained weights).
        ema_horizon = steps * 1000 // (FAST_EPOCHS * steps_per_epoch)
        config.optim.update(
            schedule="cosine",
            warmup_steps=steps // 20,
            boundaries=(),
            scales=(),
            nesterov=True,
            weight_decay=5e-4,
            label_smoothing=0.1,
            ema=1 - 1 / ema_horizon,
        )
        config.train.update(
            steps=steps,
            eval_every=steps_per_epoch,
            checkpoint_every=steps_per_epoch,
            keep_checkpoints=2,
            log_every=39,
        )
    elif match["epochs"]:  # the short recipe: warmup + cosine over N epochs, an eval each epoch
        steps = int(match["epochs"]) * steps_per_epoch
        config.optim.update(schedule="cosine", warmup_steps=steps // 20, boundaries=(), scales=())
        config.train.update(
            steps=steps, eval_every=steps_per_epoch, checkpoint_every=100, log_every=10
        )
    elif depth == 110:  # the paper's warm-up: lr 0.01 until step 400, then 0.1
        config.optim.update(lr=0.01, boundaries=(400, 32_000, 48_000), scales=(10.0, 0.1, 0.1))
    return config
