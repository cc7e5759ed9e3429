"""The ResNet family: parameter counts, block semantics, the registry, and errors on bad
configurations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_run import REPO

from resnet_jax.nn.models import get_model
from resnet_jax.nn.shapes import ShapeError


def param_count(model, size):
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
    return sum(leaf.size for leaf in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize(
    "name,count",
    [
        # torchvision's published counts (1000 classes).
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
    ],
)
def test_imagenet_parameter_counts_equal_torchvision(name, count):
    assert param_count(get_model(name), 224) == count


@pytest.mark.parametrize(
    "name,count",
    [
        # He et al. 2015, Table 6: 0.27M and 1.7M; the exact figures of the option-A reference
        # implementation.
        ("cifar_resnet20", 269_722),
        ("cifar_resnet32", 464_154),
        ("cifar_resnet44", 658_586),
        ("cifar_resnet56", 853_018),
        ("cifar_resnet110", 1_727_962),
    ],
)
def test_cifar_parameter_counts_equal_the_paper(name, count):
    assert param_count(get_model(name), 32) == count


@pytest.mark.parametrize(
    "name,block,exact,published",
    [
        # He et al. 2016 (identity mappings), Table 2/3: ResNet-164 1.7M, ResNet-1001 10.2M, both
        # bottleneck nets; He et al. 2015, Table 6: ResNet-1202 19.4M, basic blocks. Exact counts of
        # our builds beside them.
        ("cifar_preact_resnet164", "preact_bottleneck", 1_703_258, 1.7e6),
        ("cifar_resnet164", "bottleneck", 1_704_154, 1.7e6),
        ("cifar_preact_resnet1001", "preact_bottleneck", 10_327_706, 10.2e6),
        ("cifar_resnet1202", "basic", 19_421_274, 19.4e6),
    ],
)
def test_deep_cifar_names_follow_the_papers(name, block, exact, published):
    model = get_model(name)
    assert model.block == block and model.stage_sizes[0] == (
        18 if "164" in name else 111 if "1001" in name else 200
    )
    count = param_count(model, 32)
    assert count == exact
    # The papers round to 0.1M; 1001's projections put ours 1.3% above its 10.2M.
    assert abs(count - published) / published < 0.015


def test_a_researchers_own_block_plugs_in():
    from resnet_jax.nn.blocks import BasicBlock, PreActBasicBlock

    assert param_count(get_model("cifar_resnet20", block=PreActBasicBlock), 32) == param_count(
        get_model("cifar_preact_resnet20"), 32
    )

    class MyBasic(BasicBlock):  # a block class defined outside the package, not in the registry
        def __call__(self, x):
            return super().__call__(x)

    assert param_count(get_model("cifar_resnet20", block=MyBasic), 32) == 269_722


def test_plain_twin_has_the_same_parameters_and_no_shortcut():
    assert param_count(get_model("cifar_plain56"), 32) == param_count(
        get_model("cifar_resnet56"), 32
    )
    # Option B adds 1x1 projections where the shape changes; C adds them everywhere.
    b, c = (param_count(get_model("cifar_resnet20", shortcut=s), 32) for s in "BC")
    assert 269_722 < b < c


def test_zero_init_last_makes_each_block_its_shortcut():
    # Last BN scale zero: each identity-shortcut block returns relu(0 + x) = x, its (already
    # non-negative) input.
    model = get_model(
        "cifar_resnet8", zero_init_last=True, stage_strides=(1, 1, 1), widths=(16, 16, 16)
    )
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    variables = model.init(jax.random.key(0), x)
    _, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    seen = state["intermediates"]
    block_input = jax.nn.relu(seen["stem_bn"]["__call__"][0])
    for name in ("stage1_block0", "stage2_block0", "stage3_block0"):
        np.testing.assert_allclose(seen[name]["__call__"][0], block_input, rtol=1e-6, atol=1e-6)
    plain = get_model(
        "cifar_plain8", zero_init_last=True, stage_strides=(1, 1, 1), widths=(16, 16, 16)
    )
    # The plain twin has nothing to pass on: its blocks output zeros, so its logits are the zero
    # bias.
    assert float(jnp.abs(plain.apply(variables, x)).max()) == 0.0
    assert float(jnp.abs(model.apply(variables, x)).max()) > 0.0
    _, plain_state = plain.apply(
        variables, x, capture_intermediates=True, mutable=["intermediates"]
    )
    assert float(jnp.abs(plain_state["intermediates"]["stage3_block0"]["__call__"][0]).max()) == 0.0


@pytest.mark.parametrize(
    "name,size,final_hw",
    [
        ("cifar_resnet20", 32, 8),
        ("cifar_preact_resnet20", 32, 8),
        ("cifar_plain20", 32, 8),
        pytest.param("resnet18", 64, 2, marks=pytest.mark.slow),
        pytest.param("preact_resnet50", 64, 2, marks=pytest.mark.slow),
    ],
)
def test_forward_shapes(name, size, final_hw):
    model = get_model(name, num_classes=7)
    x = jnp.ones((2, size, size, 3))
    variables = model.init(jax.random.key(0), x)
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    assert set(updates) == {"batch_stats"}


def test_v1_and_v15_differ_only_in_stride_placement():
    v15, v1 = get_model("resnet50"), get_model("resnet50", stride_in_1x1=True)
    assert param_count(v15, 224) == param_count(v1, 224)
    # The same variables give other logits. On one narrow bottleneck block per stage, which has
    # every stride-2 block of ResNet-50's kinds, compiled (op by op, each operation is compiled
    # alone: ~20 s here).
    small = {"stage_sizes": (1, 1, 1, 1), "width_multiplier": 0.25}
    v15, v1 = get_model("resnet50", **small), get_model("resnet50", stride_in_1x1=True, **small)
    x = jnp.ones((1, 64, 64, 3))
    variables = jax.jit(v15.init)(jax.random.key(0), x)
    assert not np.allclose(jax.jit(v15.apply)(variables, x), jax.jit(v1.apply)(variables, x))


def test_bfloat16_compute_keeps_float32_params():
    model = get_model("cifar_resnet8", dtype=jnp.bfloat16)
    variables = model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert model.apply(variables, jnp.ones((1, 32, 32, 3))).dtype == jnp.float32


def test_grayscale_and_width_multiplier():
    model = get_model("cifar_resnet8", width_multiplier=0.5)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    assert variables["params"]["stem_conv"]["kernel"].shape == (3, 3, 1, 8)


@pytest.mark.parametrize(
    "name,overrides,message",
    [
        ("cifar_resnet21", {}, "6n\\+2"),
        ("cifar_resnet32", {"block": "bottleneck"}, "9n\\+2"),
        ("resnet51", {}, "must be one of"),
        ("vgg16", {}, "Unknown model 'vgg16'"),
        ("resnet50", {"shortcut": "D"}, "Unknown shortcut"),
        ("resnet50", {"padding": "full"}, "Unknown padding mode"),
        ("resnet50", {"stage_sizes": (1, 2)}, "one entry per stage"),
        ("resnet50", {"depht": 3}, "Unknown model field"),
    ],
)
def test_bad_configurations_raise_clear_errors(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_model(name, **overrides)


def test_collapsing_map_fails_before_compilation_naming_the_layer():
    model = get_model("resnet18", stem_padding=0)
    with pytest.raises(ShapeError, match="Layer 'stem_conv'.*collapses.*input size 4, kernel 7"):
        model.init(jax.random.key(0), jnp.ones((1, 4, 4, 3)))


def test_mismatched_shortcut_is_named():
    # Shortcut A cannot shrink channels: a stage narrower than the one before it.
    model = get_model("cifar_resnet8", widths=(32, 16, 64))
    with pytest.raises(ShapeError, match="Block 'stage2_block0'.*cannot reduce 32 channels to 16"):
        # raised while tracing
        jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    # A stride-2 block on a 'VALID'-padded stem output still adds: residual and shortcut shapes
    # agree.
    assert jax.eval_shape(
        get_model("cifar_resnet8", stem_padding="VALID").init,
        jax.random.key(0),
        jnp.ones((1, 33, 33, 3)),
    )


def test_a_plain_net_refuses_shortcuts():
    """A shortcut override would silently turn a plain net into a residual one (and void a
    degradation study)."""
    with pytest.raises(ValueError, match="plain network has no shortcuts, but shortcut='A'"):
        get_model("cifar_plain20", shortcut="A")
    with pytest.raises(ValueError, match="resnet50 name"):
        get_model("plain50", shortcut="B")
    assert get_model("cifar_plain20", shortcut="none").shortcut == "none"
    assert get_model("cifar_plain", depth=20).shortcut == "none"


def test_the_readmes_own_block_example_builds_a_resnet_with_that_block():
    """README "Your own block": a Block subclass passed as block= is used in every stage, as
    written there."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Your own block") :]
    start = section.index("```python\n") + len("```python\n")
    example = section[start : section.index("\n```", start)]
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    model = namespace["model"]
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    blocks = [name for name in variables["params"] if name.startswith("stage")]
    assert len(blocks) == 9 and all(
        set(variables["params"][b]) == {"conv1", "conv2"} for b in blocks
    )
    # ResNet-20's parameters less its blocks' BatchNorm (scale and bias of each block's two BNs).
    ours = jax.eval_shape(
        lambda: get_model("cifar_resnet20").init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    )
    bn = sum(
        leaf.size
        for b in blocks
        for name, sub in ours["params"][b].items()
        if name.startswith("bn")
        for leaf in jax.tree.leaves(sub)
    )
    count = lambda v: sum(leaf.size for leaf in jax.tree.leaves(v["params"]))  # noqa: E731
    assert count(variables) == count(ours) - bn == 269_722 - bn
    assert model.apply(
        jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), variables),
        jnp.zeros((2, 32, 32, 3)),
        train=False,
        mutable=False,
    ).shape == (2, 10)
