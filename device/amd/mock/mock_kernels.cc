#include "device/amd/mock/mock_kernels.h"

#include <cmath>
#include <cstring>
#include <string_view>

#include "device/amd/gpu/host_kernels.h"
#include "device/amd/gpu/kernargs.h"
#include "device/amd/packet_stream.h"
#include "device/cpu/cpu_kernels.h"
#include "runtime/check.h"

namespace petaring::amd {
namespace {

using packet::hex;

// GPU memory seen as a Buffer, so the cpu kernels can run over it (GPU VA = CPU VA).
class MockBuffer : public Buffer {
 public:
  MockBuffer(uint64_t address, size_t size) : address_(address), size_(size) {}
  size_t size() const override { return size_; }
  void* host_data() override { return reinterpret_cast<void*>(address_); }
  std::string device_name() const override { return "mock KFD GPU"; }

 private:
  uint64_t address_;
  size_t size_;
};

// Checks a dispatch's buffers and grid against its kernargs and, when `execute`, runs
// the cpu backend's kernel over them.
class Twin {
 public:
  Twin(MockKfd& kfd, std::string_view kernel, bool execute)
      : kfd_(kfd), kernel_(kernel), execute_(execute) {}
  bool execute() const { return execute_; }

  // A tensor over `count` elements at `address`, after checking the range is mapped.
  Tensor tensor(uint64_t address, Shape shape, DType dtype, const char* role) {
    const size_t bytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
    if (bytes > 0 && kfd_.find_gpu_mapped(address, bytes) == nullptr) {
      throw MockQueueFault{address, ErrorKind::kFailedPrecondition,
                           str_cat(kernel_, ": ", role, " [", hex(address), ", +", bytes,
                                   ") is not inside memory mapped for the GPU")};
    }
    buffers_.push_back(std::make_unique<MockBuffer>(address == 0 ? 64 : address,
                                                    std::max<size_t>(bytes, 1)));
    return Tensor(buffers_.back().get(), 0, shape, dtype);
  }
  Tensor f32(uint64_t address, Shape shape, const char* role) {
    return tensor(address, shape, DType::kF32, role);
  }
  // A buffer that the *_bf16 kernel holds in bf16 and its f32 twin in f32.
  Tensor half(uint64_t address, Shape shape, const char* role) {
    return tensor(address, shape, kernel_.ends_with("_bf16") ? DType::kBF16 : DType::kF32, role);
  }
  void expect_grid(const MockDispatch& d, uint64_t work_items) {
    const uint64_t covered = uint64_t{d.grid[0]} * d.workgroup_size[0] * d.grid[1] *
                             std::max<uint32_t>(d.workgroup_size[1], 1) * d.grid[2];
    if (covered < work_items) {
      throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                           str_cat(kernel_, ": the grid covers ", covered, " work-items but the ",
                                   "kernargs ask for ", work_items)};
    }
  }
  void run(const KernelArgs& args) {
    if (!execute_) return;
    static const std::vector<CpuKernel> table = make_cpu_kernels();
    for (const CpuKernel& k : table) {
      if (k.name() == kernel_) return k.run(args);
    }
    throw MockQueueFault{0, ErrorKind::kUnimplemented, str_cat(kernel_, ": no CPU twin")};
  }

 private:
  MockKfd& kfd_;
  std::string_view kernel_;
  bool execute_;
  std::vector<std::unique_ptr<MockBuffer>> buffers_;
};

template <typename Args>
Args read_args(MockKfd& kfd, uint64_t address, const KernelInfo& kernel) {
  if (kernel.kernarg_size < sizeof(Args)) {
    throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                         str_cat(kernel.name, ": the descriptor's kernarg_size ",
                                 kernel.kernarg_size, " is smaller than its arguments (",
                                 sizeof(Args), " bytes)")};
  }
  if (kfd.find_gpu_mapped(address, sizeof(Args)) == nullptr) {
    throw MockQueueFault{address, ErrorKind::kFailedPrecondition,
                         str_cat(kernel.name, ": kernargs at ", hex(address),
                                 " are not inside memory mapped for the GPU")};
  }
  Args args;
  std::memcpy(&args, reinterpret_cast<const void*>(address), sizeof(Args));
  return args;
}

// Writes the first of `values` outside [0, limit) to the status word as the GPU kernels
// do (value << 32 | index + 1): softmax labels, embedding tokens. True if there was one.
bool range_status(MockKfd& kfd, std::string_view kernel, uint64_t status, const int32_t* values,
                  uint32_t count, uint32_t limit) {
  for (uint32_t i = 0; i < count; ++i) {
    if (values[i] >= 0 && static_cast<uint32_t>(values[i]) < limit) continue;
    if (status != 0) {
      if (kfd.find_gpu_mapped(status, 8) == nullptr) {
        throw MockQueueFault{status, ErrorKind::kFailedPrecondition,
                             str_cat(kernel, ": the status word is not inside memory mapped "
                                     "for the GPU")};
      }
      *reinterpret_cast<volatile uint64_t*>(status) =
          uint64_t{static_cast<uint32_t>(values[i])} << 32 | (i + 1);
    }
    return true;
  }
  return false;
}

// The (B, T) tokens of an embedding launch: count tokens in rows of `steps`.
Tensor tokens_tensor(Twin& t, std::string_view kernel, uint64_t address, uint32_t count,
                     uint32_t steps) {
  if (steps == 0 || count % steps != 0) {
    throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                         str_cat(kernel, ": ", count, " tokens are not whole rows of ", steps)};
  }
  return t.tensor(address, {count / steps, steps}, DType::kI32, "tokens");
}

// The attention launch's tensors qkv, out (or dout) and a (B, H, T, T) square.
void expect_heads(std::string_view kernel, uint32_t channels, uint32_t heads) {
  if (heads == 0 || channels % heads != 0) {
    throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                         str_cat(kernel, ": ", channels, " channels in ", heads, " heads")};
  }
}

void run_twin(MockKfd& kfd, const KernelInfo& kernel, uint64_t kernargs, const MockDispatch& d,
              bool execute) {
  const std::string_view k = kernel.name;
  Twin t(kfd, k, execute);
  if (k == "gemm" || k == "gemm_bf16") {
    auto g = read_args<PrGemmArgs>(kfd, kernargs, kernel);
    const int64_t m = g.m, n = g.n, kk = g.k;
    Shape a_shape = g.trans_a ? Shape{kk, m} : Shape{m, kk};
    Shape b_shape = g.trans_b ? Shape{n, kk} : Shape{kk, n};
    if (uint64_t{d.grid[0]} * d.workgroup_size[0] < g.n || uint64_t{d.grid[1]} * d.workgroup_size[1] < g.m) {
      t.expect_grid(d, uint64_t{g.m} * g.n);
    }
    t.run({{t.half(g.a, a_shape, "A"), t.half(g.b, b_shape, "B"), t.f32(g.c, {m, n}, "C")},
           {g.alpha, g.beta}, {g.trans_a, g.trans_b}});
  } else if (k == "linear_bf16") {
    auto g = read_args<PrLinearArgs>(kfd, kernargs, kernel);
    if (uint64_t{d.grid[0]} * d.workgroup_size[0] < g.outs ||
        uint64_t{d.grid[1]} * d.workgroup_size[1] < g.rows) {
      t.expect_grid(d, uint64_t{g.rows} * g.outs);
    }
    const int64_t rows = g.rows, outs = g.outs, ins = g.ins;
    t.run({{t.half(g.x, {rows, ins}, "X"), t.half(g.w, {outs, ins}, "W"),
            t.f32(g.bias, {outs}, "bias"),
            t.tensor(g.y, {rows, outs}, g.y_bf16 != 0 ? DType::kBF16 : DType::kF32, "Y")},
           {}, {}});
  } else if (k == "scratch_probe") {
    // A diagnostic with no kernel in the cpu table: its twin is the GPU source itself,
    // compiled for the host (gpu/host_kernels.h).
    auto g = read_args<PrScratchProbeArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    t.tensor(g.x, {g.count}, DType::kI32, "x");
    t.tensor(g.y, {g.count}, DType::kI32, "y");
    if (t.execute()) {
      gpu::run_host_kernel(k, reinterpret_cast<const void*>(kernargs), sizeof(g), d.grid,
                           d.workgroup_size);
    }
  } else if (k == "convert") {
    auto g = read_args<PrConvertArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    if (g.mode > PR_CONVERT_COPY32) {
      throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                           str_cat("convert: mode ", g.mode, " is none of kernargs.h's")};
    }
    const bool from16 = g.mode == PR_CONVERT_WIDEN || g.mode == PR_CONVERT_COPY16;
    const bool to16 = g.mode == PR_CONVERT_NARROW || g.mode == PR_CONVERT_COPY16;
    t.run({{t.tensor(g.x, {g.count}, from16 ? DType::kBF16 : DType::kF32, "X"),
            t.tensor(g.y, {g.count}, to16 ? DType::kBF16 : DType::kF32, "Y")},
           {}, {}});
  } else if (k == "bias_add") {
    auto g = read_args<PrBiasAddArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, uint64_t{g.rows} * g.cols);
    t.run({{t.f32(g.y, {g.rows, g.cols}, "Y"), t.f32(g.bias, {g.cols}, "bias")}, {}, {}});
  } else if (k == "bias_grad") {
    auto g = read_args<PrBiasGradArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.cols);
    t.run({{t.f32(g.dy, {g.rows, g.cols}, "dY"), t.f32(g.dbias, {g.cols}, "dbias")}, {g.beta}, {}});
  } else if (k == "relu") {
    auto g = read_args<PrReluArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    t.run({{t.f32(g.x, {g.count}, "X"), t.f32(g.y, {g.count}, "Y")}, {}, {}});
  } else if (k == "relu_backward") {
    auto g = read_args<PrReluBackwardArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    t.run({{t.f32(g.y, {g.count}, "Y"), t.f32(g.dy, {g.count}, "dY"), t.f32(g.dx, {g.count}, "dX")},
           {}, {}});
  } else if (k == "softmax_xent_forward") {
    auto g = read_args<PrSoftmaxXentForwardArgs>(kfd, kernargs, kernel);
    Tensor labels = t.tensor(g.labels, {g.rows}, DType::kI32, "labels");
    if (execute && range_status(kfd, k, g.status, labels.data<int32_t>(), g.rows, g.cols)) return;
    t.run({{t.f32(g.logits, {g.rows, g.cols}, "logits"), labels,
            t.f32(g.probs, {g.rows, g.cols}, "probs"), t.f32(g.loss, {1}, "loss")}, {}, {}});
  } else if (k == "softmax_xent_backward") {
    auto g = read_args<PrSoftmaxXentBackwardArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, uint64_t{g.rows} * g.cols);
    Tensor labels = t.tensor(g.labels, {g.rows}, DType::kI32, "labels");
    if (execute && range_status(kfd, k, g.status, labels.data<int32_t>(), g.rows, g.cols)) return;
    t.run({{t.f32(g.probs, {g.rows, g.cols}, "probs"), labels,
            t.f32(g.dlogits, {g.rows, g.cols}, "dlogits")}, {g.scale}, {}});
  } else if (k == "sgd_momentum") {
    auto g = read_args<PrSgdMomentumArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    t.run({{t.f32(g.param, {g.count}, "param"), t.f32(g.grad, {g.count}, "grad"),
            t.f32(g.velocity, {g.count}, "velocity")},
           {g.lr, g.momentum, g.weight_decay}, {g.nesterov}});
  } else if (k == "adamw") {
    // The GPU receives the per-step scalars, not lr and t: the cpu kernel's loop over them.
    auto g = read_args<PrAdamwArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    float* param = t.f32(g.param, {g.count}, "param").data<float>();
    const float* grad = t.f32(g.grad, {g.count}, "grad").data<float>();
    float* m = t.f32(g.m, {g.count}, "m").data<float>();
    float* v = t.f32(g.v, {g.count}, "v").data<float>();
    if (!execute) return;
    for (uint32_t i = 0; i < g.count; ++i) {
      const float p = param[i] * g.keep;
      const float mi = g.beta1 * m[i] + (1.0f - g.beta1) * grad[i];
      const float vi = g.beta2 * v[i] + (1.0f - g.beta2) * grad[i] * grad[i];
      m[i] = mi;
      v[i] = vi;
      param[i] = p - g.step_size * (mi / (std::sqrt(vi) / g.bias2_sqrt + g.eps));
    }
  } else if (k == "sum_squares") {
    auto g = read_args<PrSumSquaresArgs>(kfd, kernargs, kernel);
    t.run({{t.f32(g.x, {g.count}, "X"), t.f32(g.out, {1}, "out")}, {}, {}});
  } else if (k == "fill") {
    auto g = read_args<PrFillArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    t.run({{t.f32(g.x, {g.count}, "X")}, {g.value}, {}});
  } else if (k == "copy") {
    auto g = read_args<PrCopyArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, (uint64_t{g.bytes} + 3) / 4);
    t.run({{t.tensor(g.x, {g.bytes}, DType::kU8, "X"), t.tensor(g.y, {g.bytes}, DType::kU8, "Y")},
           {}, {}});
  } else if (k == "scale") {
    auto g = read_args<PrScaleArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    t.run({{t.f32(g.x, {g.count}, "X")}, {g.alpha}, {}});
  } else if (k == "embedding_forward") {
    auto g = read_args<PrEmbeddingForwardArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, uint64_t{g.count} * g.channels);
    Tensor tokens = tokens_tensor(t, k, g.tokens, g.count, g.steps);
    const int64_t c = g.channels;
    Tensor wte = t.f32(g.wte, {g.vocab, c}, "wte"), wpe = t.f32(g.wpe, {g.steps, c}, "wpe");
    Tensor out = t.f32(g.out, {g.count / g.steps, g.steps, c}, "out");
    if (execute && range_status(kfd, k, g.status, tokens.data<int32_t>(), g.count, g.vocab)) return;
    t.run({{tokens, wte, wpe, out}, {}, {}});
  } else if (k == "embedding_backward") {
    auto g = read_args<PrEmbeddingBackwardArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, (uint64_t{g.vocab} + g.positions) * g.channels);
    Tensor tokens = tokens_tensor(t, k, g.tokens, g.count, g.steps);
    const int64_t c = g.channels;
    Tensor dout = t.f32(g.dout, {g.count / g.steps, g.steps, c}, "dout");
    Tensor dwte = t.f32(g.dwte, {g.vocab, c}, "dwte"), dwpe = t.f32(g.dwpe, {g.positions, c}, "dwpe");
    if (execute && range_status(kfd, k, g.status, tokens.data<int32_t>(), g.count, g.vocab)) return;
    t.run({{dout, tokens, dwte, dwpe}, {g.beta_wte, g.beta_wpe}, {}});
  } else if (k == "layernorm_forward" || k == "layernorm_forward_bf16") {
    auto g = read_args<PrLayernormForwardArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.rows);
    t.run({{t.f32(g.x, {g.rows, g.cols}, "X"), t.f32(g.weight, {g.cols}, "weight"),
            t.f32(g.bias, {g.cols}, "bias"), t.half(g.y, {g.rows, g.cols}, "Y"),
            t.f32(g.mean, {g.rows}, "mean"), t.f32(g.rstd, {g.rows}, "rstd")},
           {g.eps}, {}});
  } else if (k == "layernorm_backward") {
    auto g = read_args<PrLayernormBackwardArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, uint64_t{g.rows} + g.cols);
    t.run({{t.f32(g.dy, {g.rows, g.cols}, "dY"), t.f32(g.x, {g.rows, g.cols}, "X"),
            t.f32(g.weight, {g.cols}, "weight"), t.f32(g.mean, {g.rows}, "mean"),
            t.f32(g.rstd, {g.rows}, "rstd"), t.f32(g.dx, {g.rows, g.cols}, "dX"),
            t.f32(g.dweight, {g.cols}, "dweight"), t.f32(g.dbias, {g.cols}, "dbias")},
           {g.dx_beta, g.param_beta}, {}});
  } else if (k == "gelu" || k == "gelu_bf16") {
    auto g = read_args<PrGeluArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    t.run({{t.half(g.x, {g.count}, "X"), t.half(g.y, {g.count}, "Y")}, {}, {}});
  } else if (k == "gelu_backward" || k == "gelu_backward_bf16") {
    auto g = read_args<PrGeluBackwardArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    t.run({{t.half(g.x, {g.count}, "X"), t.f32(g.dy, {g.count}, "dY"), t.f32(g.dx, {g.count}, "dX")},
           {}, {}});
  } else if (k == "add") {
    auto g = read_args<PrAddArgs>(kfd, kernargs, kernel);
    t.expect_grid(d, g.count);
    t.run({{t.f32(g.x, {g.count}, "X"), t.f32(g.y, {g.count}, "Y"), t.f32(g.z, {g.count}, "Z")},
           {}, {}});
  } else if (k == "attention_forward" || k == "attention_forward_bf16") {
    auto g = read_args<PrAttentionForwardArgs>(kfd, kernargs, kernel);
    expect_heads(k, g.channels, g.heads);
    t.expect_grid(d, uint64_t{g.batch} * g.heads * g.steps);
    const int64_t b = g.batch, s = g.steps, c = g.channels, h = g.heads;
    t.run({{t.half(g.qkv, {b, s, 3 * c}, "qkv"), t.half(g.out, {b, s, c}, "out"),
            t.half(g.probs, {b, h, s, s}, "probs")},
           {}, {h}});
  } else if (k == "attention_backward" || k == "attention_backward_kv" ||
             k == "attention_backward_bf16" || k == "attention_backward_kv_bf16") {
    // The cpu twin of attention_backward computes the whole gradient; the second
    // dispatch (dK and dV from the first's dS rows) is checked, its work already done.
    auto g = read_args<PrAttentionBackwardArgs>(kfd, kernargs, kernel);
    expect_heads(k, g.channels, g.heads);
    t.expect_grid(d, uint64_t{g.batch} * g.heads * g.steps);
    const int64_t b = g.batch, s = g.steps, c = g.channels, h = g.heads;
    KernelArgs args{{t.f32(g.dout, {b, s, c}, "dout"), t.half(g.qkv, {b, s, 3 * c}, "qkv"),
                     t.half(g.probs, {b, h, s, s}, "probs"), t.f32(g.dqkv, {b, s, 3 * c}, "dqkv"),
                     t.f32(g.scratch, {b, h, s, s}, "scratch")},
                    {}, {h}};
    if (k == "attention_backward" || k == "attention_backward_bf16") t.run(args);
  } else {
    throw MockQueueFault{0, ErrorKind::kUnimplemented, str_cat(k, ": the mock has no CPU twin")};
  }
}

// The kernel whose descriptor and code sit at the dispatched program address.
const KernelInfo* identify(MockKfd& kfd, const CodeObject& code, uint64_t program) {
  const auto& image = code.image();
  for (const KernelInfo& k : code.kernels()) {
    const uint64_t descriptor = program - static_cast<uint64_t>(k.entry_byte_offset);
    const size_t code_bytes = std::min<size_t>(256, image.size() - k.entry_offset);
    if (kfd.find_gpu_mapped(descriptor, 64) == nullptr ||
        kfd.find_gpu_mapped(program, code_bytes) == nullptr) {
      continue;
    }
    if (std::memcmp(reinterpret_cast<const void*>(descriptor), image.data() + k.descriptor_offset,
                    64) == 0 &&
        std::memcmp(reinterpret_cast<const void*>(program), image.data() + k.entry_offset,
                    code_bytes) == 0) {
      return &k;
    }
  }
  return nullptr;
}

}  // namespace

MockDispatchHandler make_mock_kernel_runner(std::shared_ptr<const CodeObject> code_object,
                                            MockKernels kernels) {
  return [code = std::move(code_object), kernels](MockKfd& kfd, const MockDispatch& d) {
    const KernelInfo* kernel = identify(kfd, *code, d.program_address);
    if (kernel == nullptr) {
      throw MockQueueFault{d.program_address, ErrorKind::kFailedPrecondition,
                           str_cat("DISPATCH_DIRECT: no kernel of ", code->origin(),
                                   " has its descriptor and code at COMPUTE_PGM ",
                                   hex(d.program_address))};
    }
    if ((d.rsrc1 & ~(1u << 20)) != (kernel->rsrc1 & ~(1u << 20)) || d.rsrc2 != kernel->rsrc2) {
      throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                           str_cat(kernel->name, ": COMPUTE_PGM_RSRC1/2 ", hex(d.rsrc1), "/",
                                   hex(d.rsrc2), " differ from the descriptor's ",
                                   hex(kernel->rsrc1), "/", hex(kernel->rsrc2))};
    }
    if (kernel->scratch_enabled || kernel->private_segment_size > 0) {
      // What the GPU needs for scratch: a wave size that holds every lane's private
      // segment, some waves, the whole layout in GPU memory, and the base in the
      // flat-scratch user SGPRs when the descriptor asks for them.
      const uint64_t wave_bytes = uint64_t{d.tmpring_size >> 12 & 0x7fff} * 256;
      const uint64_t waves = d.tmpring_size & 0xfff;
      if (wave_bytes < uint64_t{kernel->private_segment_size} * 64 || waves == 0) {
        throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                             str_cat(kernel->name, ": needs ", kernel->private_segment_size,
                                     " scratch bytes per work-item but COMPUTE_TMPRING_SIZE is ",
                                     hex(d.tmpring_size))};
      }
      if (kfd.find_gpu_mapped(d.scratch_base, waves * wave_bytes) == nullptr) {
        throw MockQueueFault{d.scratch_base, ErrorKind::kFailedPrecondition,
                             str_cat(kernel->name, ": scratch at ", hex(d.scratch_base), " (",
                                     waves, " waves of ", wave_bytes,
                                     " bytes) is not inside memory mapped for the GPU")};
      }
      const int fsi = kernel->user_sgprs.flat_scratch_init_index();
      if (fsi >= 0 && (fsi + 1 >= static_cast<int>(d.user_data.size()) ||
                       (uint64_t{d.user_data[static_cast<size_t>(fsi) + 1]} << 32 |
                        d.user_data[static_cast<size_t>(fsi)]) != d.scratch_base)) {
        throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                             str_cat(kernel->name, ": the flat scratch init SGPRs do not hold "
                                     "the scratch base")};
      }
    }
    const int index = kernel->user_sgprs.kernarg_segment_ptr_index();
    if (index < 0 || index + 1 >= static_cast<int>(d.user_data.size())) {
      throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                           str_cat(kernel->name, ": the descriptor enables no kernarg pointer")};
    }
    const uint64_t kernargs = uint64_t{d.user_data[static_cast<size_t>(index) + 1]} << 32 |
                              d.user_data[static_cast<size_t>(index)];
    const bool gpu_source = kernels == MockKernels::kGpuSource;
    run_twin(kfd, *kernel, kernargs, d, !gpu_source);
    if (gpu_source) {
      gpu::run_host_kernel(kernel->name, reinterpret_cast<const void*>(kernargs),
                           kernel->kernarg_size, d.grid, d.workgroup_size);
    }
  };
}

}  // namespace petaring::amd
