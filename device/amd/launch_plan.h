// Host side of a kernel launch on the amd backend: KernelArgs (device/kernels.h's
// contract) -> the kernarg bytes of device/amd/gpu/kernargs.h and the launch shape.
// Runs on the queue's worker, so its errors surface at synchronize(), as on the cpu
// backend: a dtype other than the contract's (f32; i32 labels; bf16 where a *_bf16 kernel
// or convert takes it) raises kUnimplemented naming the kernel, broken counts fail a
// PR_CHECK.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "device/device.h"

namespace petaring::amd {

struct LaunchPlan {
  // The GPU kernel to dispatch: the launched one, or a helper of the code object that
  // the kernel table does not name (is_helper_kernel) for a later step.
  std::string_view kernel;
  std::vector<uint8_t> kernargs;           // the kernel's Pr*Args struct
  std::array<uint32_t, 3> workgroup{1, 1, 1};  // work-items per workgroup
  std::array<uint32_t, 3> grid{0, 0, 0};   // workgroups; all 0 = nothing to run
  // Byte offset in `kernargs` of a u64 status address the queue fills in (a GTT word it
  // zeroes before the launch and checks after it); -1 when the kernel has none.
  int status_offset = -1;
  bool empty() const { return grid[0] == 0 || grid[1] == 0 || grid[2] == 0; }
};

// The dispatches one launch of `kernel` takes, in order; each runs after the previous
// one completed (attention_backward is two). `address(tensor)` gives the GPU address of
// a tensor's first byte. A kernel with no plan (one added to the table later) raises
// kUnimplemented naming it.
std::vector<LaunchPlan> plan_launch(std::string_view kernel, const KernelArgs& args,
                                    const std::function<uint64_t(const Tensor&)>& address);

// True for the code object's kernels that only launch plans use (attention_backward_kv
// and attention_backward_kv_bf16) and for the diagnostic scratch_probe (launched through
// AmdDevice::find_gpu_kernel by the tests and the hardware suite):
// the device neither lists nor finds them by name.
bool is_helper_kernel(std::string_view name);

// The error a non-zero status word means: softmax_xent_* (label << 32 | row + 1) or
// embedding_* (token << 32 | position + 1), with the launch's arguments for context.
[[noreturn]] void throw_launch_status(std::string_view kernel, uint64_t status,
                                      const KernelArgs& args);

}  // namespace petaring::amd
