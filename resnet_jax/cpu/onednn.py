"""Convolutions through oneDNN on the CPU: the library behind PyTorch's CPU convolutions, as XLA
custom calls.

    from resnet_jax.cpu import onednn
    if onednn.available():                      # builds and registers the handlers once per machine
        y = onednn.conv(x, kernel, stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))
        model = get_model("cifar_resnet20", conv_backend=onednn.conv_backend)   # every conv of a
        model

XLA:CPU's own convolutions run ResNet train steps at about half PyTorch's speed
(docs/performance_notes.md); calling oneDNN for the forward pass, the data gradient and the weight
gradient closes most of that gap. `conv_backend` is a `resnet_jax.nn.conv.ConvBackend`: passed to
`conv2d(..., backend=)` or a model's `conv_backend=`, it routes one-group float32 convolutions on
the CPU here, and bfloat16 ones where the CPU has bf16 units (`machine.bf16_units()`: AVX512-BF16 or
AMX, where oneDNN has native bf16 kernels; XLA's computes bf16 through float32), and keeps XLA's
everywhere else (other dtypes, groups, GPU and TPU). In bfloat16 all three run oneDNN's bf16
kernels; the weight gradient accumulates and returns float32 and is rounded to the kernel's bfloat16
once, as the VJP requires (XLA's bf16 convolution rounds it too). `RESNET_JAX_BF16_WGRAD=f32`
computes it instead with the float32 kernel on operands widened to float32 (exact; slower in quiet
runs on AVX512-BF16, docs/performance_notes.md attempt 36). `conv` is differentiable once (custom
VJP); forward-mode and second derivatives are not defined.

The handlers (csrc/onednn_conv.cc) are compiled on first use with the system's C++ compiler against
jaxlib's FFI headers and the `onednn-devel-cpu-gomp` wheel's oneDNN headers (requirements.txt), into
$RESNET_JAX_CACHE or ~/.cache/resnet_jax, keyed by the source and the versions; a build takes ~10 s
once. They call the oneDNN inside jaxlib (3.7, on XLA's own thread pool; docs/performance_notes.md
attempt 43), or the `onednn-cpu-gomp` wheel's (3.2, OpenMP) where jaxlib's cannot be reached or
RESNET_JAX_ONEDNN=wheel says so; `route_taken()` tells which.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from resnet_jax.cpu import machine
from resnet_jax.nn.conv import xla_conv
from resnet_jax.nn.shapes import output_size

SOURCE = Path(__file__).parent / "csrc" / "onednn_conv.cc"
# float32; forward and data gradient + "Bf16"
TARGETS = {
    "forward": "RjOnednnConvForward",
    "backward_data": "RjOnednnConvBackwardData",
    "backward_weights": "RjOnednnConvBackwardWeights",
}
# activation dtype -> symbol suffix
DTYPES = {
    jnp.dtype(jnp.float32): "",
    jnp.dtype(jnp.bfloat16): "Bf16",
}
RUNTIME, HEADERS = "onednn-cpu-gomp", "onednn-devel-cpu-gomp"


class OneDnnUnavailable(RuntimeError):
    """oneDNN convolutions cannot be used here; the message says why and what to install."""


def _locate(distribution: str, suffix: str) -> Path:
    """The file of an installed wheel whose path ends with `suffix`."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise OneDnnUnavailable(
            f"the {distribution!r} wheel is not installed: pip install -r requirements.txt "
            f"(x86-64 Linux only)"
        ) from None
    for file in files:
        if str(file).endswith(suffix):
            return Path(file.locate()).resolve()
    raise OneDnnUnavailable(f"the {distribution!r} wheel has no {suffix}")


def cache_dir() -> Path:
    """Where the built handlers and conv_choice's times are kept: $RESNET_JAX_CACHE or
    ~/.cache/resnet_jax."""
    return Path(os.environ.get("RESNET_JAX_CACHE", Path.home() / ".cache" / "resnet_jax"))


def _route() -> str:
    """Which oneDNN the handlers call: 'jaxlib' (the one inside jaxlib, on XLA's thread pool; the
    default) or 'wheel' (the onednn-cpu-gomp wheel's, OpenMP); $RESNET_JAX_ONEDNN chooses."""
    route = os.environ.get("RESNET_JAX_ONEDNN", "jaxlib")
    if route not in ("jaxlib", "wheel"):
        raise OneDnnUnavailable(f"RESNET_JAX_ONEDNN={route!r}: use 'jaxlib' or 'wheel'")
    return route


def _elf_functions(path: Path, *, defined: bool) -> dict[str, int]:
    """The functions in an ELF file's symbol table (local ones too), with their offsets; or, with
    defined=False, the names it uses but does not define (offset 0)."""
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02":
        raise OneDnnUnavailable(f"{path} is not a 64-bit ELF file")
    (sections_at,) = struct.unpack_from("<Q", data, 0x28)
    entry_size, count = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, sections_at + i * entry_size) for i in range(count)
    ]
    found = {}
    for _, kind, _, _, offset, size, link, _, _, symbol_size in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        names_at = sections[link][4]
        for at in range(offset, offset + size, symbol_size):
            name_at, info, _, section, value, _ = struct.unpack_from("<IBBHQQ", data, at)
            undefined = section == 0
            if undefined == defined or (defined and (info & 0xF) != 2):  # 2: STT_FUNC
                continue
            end = data.index(b"\0", names_at + name_at)
            found[data[names_at + name_at : end].decode()] = value
    return found


def _jump_slots(names: list[str], offsets: list[int]) -> str:
    """Assembly for a jump slot per oneDNN function (hidden: nothing else in the process binds to
    them), with their offsets in libjax_common.so for resnet_jax_onednn_bind to relocate."""
    lines = [".text"]
    for i, name in enumerate(names):
        lines += [f".globl {name}", f".hidden {name}", f".type {name},@function", f"{name}:"]
        lines += [f"  jmp *(rj_dnnl_slots+{8 * i})(%rip)"]
    lines += [".data", ".balign 8", ".globl rj_dnnl_slots", ".hidden rj_dnnl_slots"]
    lines += ["rj_dnnl_slots:", *(["  .quad 0"] * len(names))]
    lines += [".section .rodata", ".balign 8", ".globl rj_dnnl_offsets", ".hidden rj_dnnl_offsets"]
    lines += ["rj_dnnl_offsets:", *(f"  .quad {offset}" for offset in offsets)]
    lines += [".globl rj_dnnl_count", ".hidden rj_dnnl_count", "rj_dnnl_count:"]
    lines += [f"  .quad {len(names)}"]
    return "\n".join([*lines, '.section .note.GNU-stack,"",@progbits', ""])


def _compile(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise OneDnnUnavailable(f"building {SOURCE.name} failed:\n{result.stderr[-2000:]}")


def _build(route: str) -> Path:
    """Compile the handlers (once per route, source and versions); the shared library's path.
    'jaxlib': against the wheel's headers (oneDNN keeps its C API's binary interface within a major
    version), linked to jaxlib's oneDNN through jump slots; 'wheel': to the wheel's libdnnl."""
    include = _locate(HEADERS, "/oneapi/dnnl/dnnl.hpp").parents[2]
    if route == "jaxlib":
        library = Path(jaxlib.__file__).parent / "libjax_common.so"
    else:
        library = _locate(RUNTIME, "/libdnnl.so.3")
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise OneDnnUnavailable("no C++ compiler found (set CXX, or install g++)")
    versions = [route, jax.__version__, jaxlib.__version__, importlib.metadata.version(HEADERS)]
    if route == "wheel":
        versions.append(importlib.metadata.version(RUNTIME))
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(versions).encode()).hexdigest()[:16]
    cache = cache_dir()
    target = cache / f"onednn_conv_{digest}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # build aside, then rename: safe with parallel builds
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        built, flags = Path(scratch) / target.name, ["-O2", "-std=c++17", "-fPIC", "-w"]
        headers = [f"-I{jax.ffi.include_dir()}", f"-I{include}"]
        if route == "wheel":
            _compile([compiler, *flags, "-shared", *headers, str(SOURCE), str(library),
                      f"-Wl,-rpath,{library.parent}", "-o", str(built)])  # fmt: skip
        else:
            objects, slots = Path(scratch) / "onednn_conv.o", Path(scratch) / "slots.S"
            _compile([compiler, *flags, "-DRJ_XLA_THREADPOOL", *headers, "-c", str(SOURCE),
                      "-o", str(objects)])  # fmt: skip
            used = [n for n in _elf_functions(objects, defined=False) if n.startswith("dnnl_")]
            inside = _elf_functions(library, defined=True)
            missing = [name for name in used if name not in inside]
            if missing:
                raise OneDnnUnavailable(f"jaxlib's oneDNN lacks {', '.join(missing)}")
            slots.write_text(_jump_slots(used, [inside[name] for name in used]))
            _compile([compiler, *flags, "-shared", str(objects), str(slots), "-Wl,-z,defs",
                      "-o", str(built)])  # fmt: skip
        os.replace(built, target)
    return target


def _open(route: str) -> ctypes.CDLL:
    library = ctypes.cdll.LoadLibrary(str(_build(route)))
    if route == "jaxlib" and library.resnet_jax_onednn_bind() != 0:
        raise OneDnnUnavailable("libjax_common.so is not loaded")
    return library


@functools.cache
def _load() -> OneDnnUnavailable | str:
    """Build, load and register the handlers; the reason they are unavailable, or the route they
    took ('jaxlib' or 'wheel', see `_route`) when they are ready."""
    if not sys.platform.startswith("linux"):
        return OneDnnUnavailable(
            f"oneDNN convolutions are built for Linux only, not {sys.platform}"
        )
    try:
        route = _route()
        try:
            library = _open(route)
        except (OneDnnUnavailable, OSError):
            if route != "jaxlib":
                raise
            route = "wheel"  # a jaxlib without its oneDNN's symbols: the wheel's, as before
            library = _open(route)
    except (OneDnnUnavailable, OSError) as error:
        return error if isinstance(error, OneDnnUnavailable) else OneDnnUnavailable(str(error))
    bf16 = [TARGETS[name] + DTYPES[jnp.dtype(jnp.bfloat16)] for name in TARGETS]
    for symbol in [*TARGETS.values(), *bf16]:
        jax.ffi.register_ffi_target(
            symbol, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
        )
    return route


def route_taken() -> str | None:
    """The oneDNN the handlers call ('jaxlib' or 'wheel', see `_route`; builds them on the first
    call); None where they cannot run."""
    route = _load()
    return None if isinstance(route, OneDnnUnavailable) else route


def available() -> bool:
    """Whether oneDNN convolutions can run here (builds them on the first call)."""
    return route_taken() is not None


def why_unavailable() -> str | None:
    """Why oneDNN convolutions cannot run here, or None when they can."""
    error = _load()
    return str(error) if isinstance(error, OneDnnUnavailable) else None


def require() -> None:
    """Raise OneDnnUnavailable, saying why, unless oneDNN convolutions can run here."""
    error = why_unavailable()
    if error is not None:
        raise OneDnnUnavailable(
            f"oneDNN convolutions cannot run: {error}. Use XLA's (train.conv_impl='xla')."
        )


def supports(x: jax.Array, kernel: jax.Array, groups: int) -> bool:
    """Whether `conv_backend` sends this convolution to oneDNN: one group, float32, or bfloat16 on
    a CPU with bf16 units (`machine.bf16_units`); others stay with XLA."""
    dtype = jnp.dtype(x.dtype)
    if groups != 1 or kernel.dtype != dtype or dtype not in DTYPES:
        return False
    return dtype == jnp.float32 or machine.bf16_units()


def handles(
    x: jax.Array, kernel: jax.Array, groups: int, padding: Sequence[tuple[int, int]]
) -> bool:
    """Whether `conv_backend` computes this convolution with oneDNN: what `supports`, without
    negative padding (a crop, which XLA's convolution does)."""
    return supports(x, kernel, groups) and min(min(p) for p in padding) >= 0


def conv_backend(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: tuple[int, int],
    padding: Sequence[tuple[int, int]],
    dilation: tuple[int, int],
    groups: int,
) -> jax.Array:
    """A ConvBackend (nn/conv.py): oneDNN on the CPU for what it `handles`, XLA's convolution
    otherwise."""

    def with_xla(x, kernel):
        return xla_conv(x, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)

    if not handles(x, kernel, groups, padding):
        return with_xla(x, kernel)
    require()  # says why and what to do, before anything is traced

    def with_onednn(x, kernel):
        return conv(x, kernel, stride=stride, padding=padding, dilation=dilation)

    return jax.lax.platform_dependent(x, kernel, cpu=with_onednn, default=with_xla)


def conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: Sequence[int],
    padding: Sequence[tuple[int, int]],
    dilation: Sequence[int],
) -> jax.Array:
    """Cross-correlation like `lax.conv_general_dilated` with NHWC/HWIO/NHWC, computed by oneDNN on
    the CPU.

    Args:
      x: [N, H, W, C], float32 or bfloat16. kernel: [KH, KW, C, K], x's dtype. stride, dilation: (h,
      w) ints >= 1. padding: ((low_h, high_h), (low_w, high_w)), each >= 0.
    Returns:
      [N, H', W', K] in x's dtype, H' = floor((H + low + high - dilation * (KH - 1) - 1) / stride)
      + 1.
    """
    require()
    if jnp.dtype(x.dtype) not in DTYPES or kernel.dtype != x.dtype:
        raise TypeError(
            f"onednn.conv takes float32 or bfloat16 x and a kernel of its dtype, got {x.dtype} and "
            f"{kernel.dtype}"
        )
    stride, dilation = tuple(map(int, stride)), tuple(map(int, dilation))
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    if min(min(p) for p in pads) < 0:
        raise ValueError(f"onednn.conv takes padding >= 0, got {pads}")
    kh, kw = kernel.shape[:2]
    if (kh, kw) == (1, 1) and stride != (1, 1) and pads == ((0, 0), (0, 0)):
        # A strided 1x1 convolution reads every stride-th pixel alone: take those, then convolve at
        # stride 1. oneDNN 3.2's strided 1x1 gradients take 2-4x as long as stride 1 on the smaller
        # input (AVX2). (N, H, W, C) -> (N, ceil(H/s), ceil(W/s), C)
        x, stride = (
            x[:, :: stride[0], :: stride[1], :],
            (1, 1),
        )
    # oneDNN wants high padding that ends exactly at the last window; XLA floors it away. Rows past
    # the last window are never read: trim the padding, or the input when padding alone cannot cover
    # the difference.
    n, h, w, c = x.shape
    trimmed, rows = [], [h, w]
    for axis, (size, k, s, d, (lo, hi)) in enumerate(zip((h, w), (kh, kw), stride, dilation, pads)):
        # padded rows the windows cover
        used = (output_size(size, k, s, (lo, hi), d) - 1) * s + d * (k - 1) + 1
        hi = used - size - lo
        if hi < 0:
            rows[axis], hi = size + hi, 0
        trimmed.append((lo, hi))
    if rows != [h, w]:
        x = x[:, : rows[0], : rows[1], :]
    wgrad = bf16_weight_gradient() if x.dtype == jnp.bfloat16 else "f32"  # for _conv_backward
    return _conv(x, kernel, stride, tuple(trimmed), dilation, wgrad)


def _attributes(stride, padding, dilation) -> dict[str, np.ndarray]:
    return {
        "stride": np.asarray(stride, np.int64),
        "dilation": np.asarray(dilation, np.int64),
        "pad_lo": np.asarray([p[0] for p in padding], np.int64),
        "pad_hi": np.asarray([p[1] for p in padding], np.int64),
    }


def _call(name: str, shape, dtype, *operands, stride, padding, dilation) -> jax.Array:
    """One handler: TARGETS[name] for the operands' dtype, returning `dtype` [shape]."""
    target = TARGETS[name] + DTYPES[jnp.dtype(operands[0].dtype)]
    call = jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, dtype), vmap_method="sequential")
    return call(*operands, **_attributes(stride, padding, dilation))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv(x, kernel, stride, padding, dilation, wgrad):
    return _conv_forward(x, kernel, stride, padding, dilation, wgrad)[0]


def _conv_forward(x, kernel, stride, padding, dilation, wgrad):
    n, h, w, c = x.shape
    kh, kw, _, k = kernel.shape
    out = [
        output_size(size, kk, s, p, d)
        for size, kk, s, d, p in zip((h, w), (kh, kw), stride, dilation, padding)
    ]
    # the handlers' kernel layout (kKernelLayout in onednn_conv.cc); the data gradient reuses it
    kernel = kernel if _takes_hwio() else kernel.transpose(3, 0, 1, 2)
    y = _call(
        "forward",
        (n, *out, k),
        x.dtype,
        x,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
    )
    return y, (x, kernel)


def _takes_hwio() -> bool:
    """Whether the loaded handlers take the kernel as HWIO (jaxlib's oneDNN) or as OHWI (the
    wheel's)."""
    return route_taken() == "jaxlib"


def bf16_weight_gradient() -> str:
    """How a bf16 convolution's weight gradient is computed, always accumulated and returned in
    float32: 'bf16' (oneDNN's bf16 kernel on the bf16 operands, the default) or 'f32' (its float32
    kernel on operands widened to float32; attempt 34 of docs/performance_notes.md). From
    RESNET_JAX_BF16_WGRAD, read when a step is traced."""
    mode = os.environ.get("RESNET_JAX_BF16_WGRAD", "bf16")
    if mode not in ("bf16", "f32"):
        raise ValueError(f"RESNET_JAX_BF16_WGRAD={mode!r}: use bf16 (the default) or f32")
    return mode


def _conv_backward(stride, padding, dilation, wgrad, residuals, dy):
    x, kernel = residuals
    dx = _call(
        "backward_data",
        x.shape,
        x.dtype,
        dy,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
    )
    if wgrad == "f32":  # XLA fuses the widening into the producers
        x, dy = x.astype(jnp.float32), dy.astype(jnp.float32)
    dkernel = _call(
        "backward_weights",
        kernel.shape,
        jnp.float32,
        x,
        dy,
        stride=stride,
        padding=padding,
        dilation=dilation,
    )
    if not _takes_hwio():
        dkernel = dkernel.transpose(1, 2, 3, 0)
    return dx, dkernel.astype(kernel.dtype)


_conv.defvjp(_conv_forward, _conv_backward)
