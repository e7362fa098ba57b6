// The cpu backend's kernel table: every kernel of device/kernels.h, with exactly the
// KernelArgs contract written there.
//
// A CpuKernel is a name and a plain function. run() executes synchronously on the
// calling thread (a CpuQueue's worker) over host memory; it allocates nothing and makes
// no virtual call per element. It checks what is cheap to check (argument counts,
// dtypes, element counts) because q.launch() may be called without the typed launchers:
// a dtype other than f32 raises kUnimplemented, broken counts fail a PR_CHECK, and data
// errors found while running (a label out of range) raise kInvalidArgument.
#pragma once

#include <string_view>
#include <vector>

#include "device/device.h"

namespace petaring {

class CpuKernel : public Kernel {
 public:
  using Function = void (*)(const KernelArgs& args);
  CpuKernel(std::string_view name, Function function) : name_(name), function_(function) {}

  std::string_view name() const override { return name_; }
  void run(const KernelArgs& args) const { function_(args); }

 private:
  std::string_view name_;  // a string literal
  Function function_;
};

// The f32 data of `tensor` for `kernel`'s argument `role`; other dtypes raise
// kUnimplemented (bf16 data goes to the *_bf16 kernels, cpu_kernels_bf16.cc).
float* f32_data(const Tensor& tensor, const char* kernel, const char* role);
// The same for a tensor that must be bf16 (kInvalidArgument otherwise).
BF16* bf16_data(const Tensor& tensor, const char* kernel, const char* role);

// The OpenMP team for a loop over `work` elements: the GEMM thread count, or 1 when small.
int kernel_team(int64_t work);

// "layernorm_forward_bf16": layernorm_forward's checks and arithmetic with Y rounded once
// to bf16 (cpu_kernels_transformer.cc holds both; cpu_kernels_bf16.cc registers this one).
void layernorm_forward_bf16_kernel(const KernelArgs& args);

// A fresh copy of the table; each CpuDevice holds its own.
std::vector<CpuKernel> make_cpu_kernels();
// Appends the transformer kernels (cpu_kernels_transformer.cc) to `table`.
void add_transformer_kernels(std::vector<CpuKernel>* table);
// Appends the mixed-precision (bf16) kernels (cpu_kernels_bf16.cc) to `table`.
void add_bf16_kernels(std::vector<CpuKernel>* table);

}  // namespace petaring
