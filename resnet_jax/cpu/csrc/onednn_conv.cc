// 2-D convolution on the CPU through oneDNN, as XLA FFI handlers: forward, data gradient, weight gradient.
//
// Layouts: activations NHWC (the project's), kernels OHWI (K, KH, KW, C), one group. Types: float32, or bfloat16
// (AVX512-BF16 or AMX kernels where the CPU has them); the weight gradient is accumulated and returned in float32
// either way, from bf16 operands or (RESNET_JAX_BF16_WGRAD=f32, see onednn.py) from operands widened to float32. oneDNN is told
// those layouts and picks its own for the kernel ("any"), which we reorder into and out of; the kernels are
// small, the activations are not. OHWI rather than the project's HWIO because oneDNN 3.2 has fast reorders from
// OHWI into some of its blocked layouts and only its generic one from HWIO (kernel reorders of a ResNet-20 step:
// 12.8 -> 8.4 ms, docs/performance_notes.md attempt 30); resnet_jax/cpu/onednn.py transposes, in XLA. A plan
// (primitive descriptor, primitive, reorders) is built once per geometry and cached; executing one plan from
// several threads at once would be safe (every thread brings its own scratchpad and weight buffer), but calls
// are serialised (exec_mutex below). Built and loaded by resnet_jax/cpu/onednn.py.
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

// From libgomp, which oneDNN's OpenMP build loads (not including omp.h keeps -fopenmp out of the build).
extern "C" {
int omp_get_max_threads(void);
void omp_set_num_threads(int);
}

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;

namespace {

enum class Kind : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// Everything that defines one convolution: N, C, H, W, K, KH, KW, OH, OW, strides, dilations, pads, and the
// type of the activations and their gradients (f32 or bf16).
struct Geometry {
  int64_t n, c, h, w, k, kh, kw, oh, ow;
  std::array<int64_t, 2> stride, dilation, pad_lo, pad_hi;
  memory::data_type data;
  memory::data_type weights_data;  // the kernel's (or its gradient's) type: `data`, or f32 for a bf16 weight gradient

  std::vector<int64_t> key(Kind kind) const {
    return {static_cast<int64_t>(kind), n, c, h, w, k, kh, kw, oh, ow, stride[0], stride[1], dilation[0],
            dilation[1], pad_lo[0], pad_lo[1], pad_hi[0], pad_hi[1], static_cast<int64_t>(data),
            static_cast<int64_t>(weights_data)};
  }
  memory::desc image(tag format) const { return {{n, c, h, w}, data, format}; }
  memory::desc output(tag format) const { return {{n, k, oh, ow}, data, format}; }
  memory::desc kernel(tag format) const { return {{k, c, kh, kw}, weights_data, format}; }
  memory::desc forward_kernel(tag format) const { return {{k, c, kh, kw}, data, format}; }
  // oneDNN counts dilation from 0 (no gaps) where XLA counts from 1.
  memory::dims dilates() const { return {dilation[0] - 1, dilation[1] - 1}; }
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, g.image(tag::nhwc),
      g.forward_kernel(tag::any), g.output(tag::nhwc), {g.stride[0], g.stride[1]}, g.dilates(),
      {g.pad_lo[0], g.pad_lo[1]}, {g.pad_hi[0], g.pad_hi[1]}, UserScratchpad());
}

// One cached convolution and the reorder between the user's OHWI kernel and the layout oneDNN chose.
struct Plan {
  dnnl::primitive conv;
  memory::desc scratchpad, kernel;  // kernel: oneDNN's layout
  dnnl::reorder kernel_reorder;     // OHWI -> oneDNN's layout (forward, data gradient) or back (weight gradient)
  bool reorder_kernel = false;
};

std::unique_ptr<Plan> MakePlan(const Geometry& g, Kind kind) {
  auto plan = std::make_unique<Plan>();
  const memory::desc ohwi = g.kernel(tag::ohwi);
  auto forward = ForwardDesc(g);
  if (kind == Kind::kForward) {
    plan->conv = dnnl::convolution_forward(forward);
    plan->scratchpad = forward.scratchpad_desc();
    plan->kernel = forward.weights_desc();
  } else if (kind == Kind::kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, g.image(tag::nhwc), g.kernel(tag::any),
        g.output(tag::nhwc), {g.stride[0], g.stride[1]}, g.dilates(), {g.pad_lo[0], g.pad_lo[1]},
        {g.pad_hi[0], g.pad_hi[1]}, forward, UserScratchpad());
    plan->conv = dnnl::convolution_backward_data(pd);
    plan->scratchpad = pd.scratchpad_desc();
    plan->kernel = pd.weights_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, g.image(tag::nhwc), g.kernel(tag::any),
        g.output(tag::nhwc), {g.stride[0], g.stride[1]}, g.dilates(), {g.pad_lo[0], g.pad_lo[1]},
        {g.pad_hi[0], g.pad_hi[1]}, forward, UserScratchpad());
    plan->conv = dnnl::convolution_backward_weights(pd);
    plan->scratchpad = pd.scratchpad_desc();
    plan->kernel = pd.diff_weights_desc();
  }
  plan->reorder_kernel = plan->kernel != ohwi;
  if (plan->reorder_kernel) {
    plan->kernel_reorder = kind == Kind::kBackwardWeights
                               ? dnnl::reorder(memory(plan->kernel, Engine(), nullptr), memory(ohwi, Engine(), nullptr))
                               : dnnl::reorder(memory(ohwi, Engine(), nullptr), memory(plan->kernel, Engine(), nullptr));
  }
  return plan;
}

const Plan& GetPlan(const Geometry& g, Kind kind) {
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::unique_ptr<Plan>> plans;
  std::lock_guard<std::mutex> lock(mutex);
  auto& plan = plans[g.key(kind)];
  if (!plan) plan = MakePlan(g, kind);
  return *plan;
}

// Runs a kernel reorder on the calling thread alone: the kernels are a few thousand numbers, and waking
// OpenMP's other threads for them costs more than the copy.
void ReorderAlone(const dnnl::reorder& reorder, dnnl::stream& stream, memory& from, memory& to) {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  reorder.execute(stream, from, to);
  omp_set_num_threads(threads);
}

// One convolution at a time. XLA's thunk executor starts independent thunks together (a data gradient beside
// its weight gradient, a projection shortcut beside its block's first convolution), and two oneDNN calls, each
// waking an OpenMP team as wide as the machine, oversubscribe the cores: in the bf16 ResNet-50 step on 2 AMX
// cores such pairs took 65 ms each instead of a few, and serialising them made the step 1.07x faster and its
// time steadier (float32 unchanged; docs/performance_notes.md attempt 42). resnet_jax_onednn_serial(0) lets them
// overlap again, for measuring.
std::mutex exec_mutex;
std::atomic<int> serial{1};

std::array<int64_t, 2> Pair(ffi::Span<const int64_t> values) { return {values[0], values[1]}; }

// Runs one convolution. image: NHWC input (or its gradient), kernel: OHWI (or its gradient), output: NHWC, all
// of type `data`.
ffi::Error Run(Kind kind, memory::data_type data, memory::data_type weights_data, void* image, void* kernel,
               void* output,
               ffi::Span<const int64_t> image_dims,
               ffi::Span<const int64_t> kernel_dims, ffi::Span<const int64_t> output_dims,
               ffi::Span<const int64_t> stride, ffi::Span<const int64_t> dilation, ffi::Span<const int64_t> pad_lo,
               ffi::Span<const int64_t> pad_hi) {
  if (image_dims.size() != 4 || kernel_dims.size() != 4 || output_dims.size() != 4 || stride.size() != 2 ||
      dilation.size() != 2 || pad_lo.size() != 2 || pad_hi.size() != 2) {
    return ffi::Error::InvalidArgument("onednn conv: want rank-4 NHWC/OHWI buffers and (h, w) attributes");
  }
  Geometry g{image_dims[0], image_dims[3], image_dims[1], image_dims[2], kernel_dims[0], kernel_dims[1],
             kernel_dims[2], output_dims[1], output_dims[2], Pair(stride), Pair(dilation), Pair(pad_lo),
             Pair(pad_hi), data, weights_data};
  if (kernel_dims[3] != g.c || output_dims[0] != g.n || output_dims[3] != g.k) {
    return ffi::Error::InvalidArgument("onednn conv: channels of image, kernel and output disagree");
  }
  try {
    const Plan& plan = GetPlan(g, kind);
    std::unique_lock<std::mutex> one_at_a_time(exec_mutex, std::defer_lock);
    if (serial.load()) one_at_a_time.lock();
    dnnl::engine& engine = Engine();
    thread_local dnnl::stream stream(engine);
    // Per-thread buffers, grown as needed and kept: a fresh multi-megabyte allocation per call costs page
    // faults on every touch. A thread runs one call at a time, so the buffers are never shared.
    thread_local std::vector<uint8_t> scratch, blocked;
    if (scratch.size() < plan.scratchpad.get_size()) scratch.resize(plan.scratchpad.get_size());
    if (plan.reorder_kernel && blocked.size() < plan.kernel.get_size()) blocked.resize(plan.kernel.get_size());
    memory scratchpad(plan.scratchpad, engine, scratch.data());
    memory image_mem(g.image(tag::nhwc), engine, image);
    memory output_mem(g.output(tag::nhwc), engine, output);
    memory ohwi(g.kernel(tag::ohwi), engine, kernel);
    memory kernel_mem = plan.reorder_kernel ? memory(plan.kernel, engine, blocked.data()) : ohwi;
    if (kind == Kind::kForward) {
      if (plan.reorder_kernel) ReorderAlone(plan.kernel_reorder, stream, ohwi, kernel_mem);
      plan.conv.execute(stream, {{DNNL_ARG_SRC, image_mem}, {DNNL_ARG_WEIGHTS, kernel_mem},
                                 {DNNL_ARG_DST, output_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
    } else if (kind == Kind::kBackwardData) {
      if (plan.reorder_kernel) ReorderAlone(plan.kernel_reorder, stream, ohwi, kernel_mem);
      plan.conv.execute(stream, {{DNNL_ARG_DIFF_SRC, image_mem}, {DNNL_ARG_WEIGHTS, kernel_mem},
                                 {DNNL_ARG_DIFF_DST, output_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
    } else {
      plan.conv.execute(stream, {{DNNL_ARG_SRC, image_mem}, {DNNL_ARG_DIFF_WEIGHTS, kernel_mem},
                                 {DNNL_ARG_DIFF_DST, output_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
      if (plan.reorder_kernel) ReorderAlone(plan.kernel_reorder, stream, kernel_mem, ohwi);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

using Ints = ffi::Span<const int64_t>;

// The handlers for one type T (F32 or BF16) of the activations and their gradients.
template <ffi::DataType T>
constexpr memory::data_type kData = T == ffi::DataType::BF16 ? memory::data_type::bf16 : memory::data_type::f32;

template <ffi::DataType T>
ffi::Error Forward(ffi::Buffer<T> x, ffi::Buffer<T> kernel, ffi::ResultBuffer<T> y, Ints stride, Ints dilation,
                   Ints pad_lo, Ints pad_hi) {
  return Run(Kind::kForward, kData<T>, kData<T>, x.untyped_data(), kernel.untyped_data(), y->untyped_data(),
             x.dimensions(), kernel.dimensions(), y->dimensions(), stride, dilation, pad_lo, pad_hi);
}

template <ffi::DataType T>
ffi::Error BackwardData(ffi::Buffer<T> dy, ffi::Buffer<T> kernel, ffi::ResultBuffer<T> dx, Ints stride,
                        Ints dilation, Ints pad_lo, Ints pad_hi) {
  return Run(Kind::kBackwardData, kData<T>, kData<T>, dx->untyped_data(), kernel.untyped_data(), dy.untyped_data(),
             dx->dimensions(), kernel.dimensions(), dy.dimensions(), stride, dilation, pad_lo, pad_hi);
}

// The weight gradient from activations and output gradient of type T, always returned (and accumulated) in f32.
template <ffi::DataType T>
ffi::Error BackwardWeights(ffi::Buffer<T> x, ffi::Buffer<T> dy, ffi::ResultBuffer<ffi::F32> dkernel,
                           Ints stride, Ints dilation, Ints pad_lo, Ints pad_hi) {
  return Run(Kind::kBackwardWeights, kData<T>, memory::data_type::f32, x.untyped_data(), dkernel->untyped_data(),
             dy.untyped_data(), x.dimensions(), dkernel->dimensions(), dy.dimensions(), stride, dilation, pad_lo, pad_hi);
}

}  // namespace

#define CONV_ATTRS                                                                                   \
  .Attr<Ints>("stride").Attr<Ints>("dilation").Attr<Ints>("pad_lo").Attr<Ints>("pad_hi")

using F32 = ffi::Buffer<ffi::F32>;
using BF16 = ffi::Buffer<ffi::BF16>;

XLA_FFI_DEFINE_HANDLER_SYMBOL(RjOnednnConvForward, Forward<ffi::F32>,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>() CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(RjOnednnConvBackwardData, BackwardData<ffi::F32>,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>() CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(RjOnednnConvBackwardWeights, BackwardWeights<ffi::F32>,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>() CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(RjOnednnConvBackwardWeightsBf16, BackwardWeights<ffi::BF16>,
                              ffi::Ffi::Bind().Arg<BF16>().Arg<BF16>().Ret<F32>() CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(RjOnednnConvForwardBf16, Forward<ffi::BF16>,
                              ffi::Ffi::Bind().Arg<BF16>().Arg<BF16>().Ret<BF16>() CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(RjOnednnConvBackwardDataBf16, BackwardData<ffi::BF16>,
                              ffi::Ffi::Bind().Arg<BF16>().Arg<BF16>().Ret<BF16>() CONV_ATTRS);

// 1: one convolution at a time (the default); 0: as many as XLA starts. Called through ctypes by measurements.
extern "C" void resnet_jax_onednn_serial(int on) { serial.store(on); }
