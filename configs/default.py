"""The default run: a small CIFAR-style ResNet on shapes32, the data set the project generates itself.

    python -m resnet_jax.main --config=configs/default.py --workdir=/tmp/runs/default

Expect about 2-3 minutes on 2 CPU cores and eval accuracy about 0.97-0.98 (chance is 0.1); see docs/training.md.
Any field can be overridden: --config.optim.lr=0.2 --config.train.steps=1000.
"""
import ml_collections
from ml_collections.config_dict import placeholder


def get_config(arg=None):
    del arg  # default.py has no variants
    config = ml_collections.ConfigDict()
    # Keyword arguments of resnet_jax.models.get_model; num_classes comes from the data set.
    config.model = dict(name="cifar_resnet", depth=8, width_multiplier=1.0, shortcut="A", zero_init_last=False,
                        # The stem and the downsampling, as experiments/stride_padding.py varies them.
                        stem_stride=1, stem_pool=False, stem_padding=placeholder(int), padding="symmetric",
                        stage_strides=(1, 2, 2))
    # Keyword arguments of resnet_jax.data.load, then the batches' settings. Batch sizes are global (all devices).
    config.data = dict(name="shapes32", path=placeholder(str), data_dir=placeholder(str),
                       manual_dir=placeholder(str), split_seed=0, eval_fraction=placeholder(float),
                       image_size=placeholder(int), in_memory=placeholder(bool),
                       augment="cifar", batch_size=128, eval_batch_size=400, seed=0)
    config.optim = dict(name="sgd", lr=0.2, momentum=0.9, nesterov=False, beta2=0.999, weight_decay=5e-4,
                        exclude_bn_and_bias=False, schedule="cosine", warmup_steps=50, boundaries=(), scales=(),
                        label_smoothing=0.0, grad_clip=0.0, ema=0.0)
    config.train = dict(steps=400, eval_every=200, checkpoint_every=100, keep_checkpoints=3, log_every=20, seed=0,
                        parallel="single", dtype="float32",
                        # 'auto': oneDNN's convolutions on the CPU where they apply (resnet_jax/onednn.py), else XLA's.
                        conv_impl="auto")
    return config
