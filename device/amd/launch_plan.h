// Host side of a kernel launch on the amd backend: KernelArgs (device/kernels.h's
// contract) -> the kernarg bytes of device/amd/gpu/kernargs.h and the launch shape.
// Runs on the queue's worker, so its errors surface at synchronize(), as on the cpu
// backend: a dtype other than f32 (i32 labels) raises kUnimplemented naming the kernel,
// broken counts fail a PR_CHECK.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "device/device.h"

namespace petaring::amd {

struct LaunchPlan {
  std::vector<uint8_t> kernargs;           // the kernel's Pr*Args struct
  std::array<uint32_t, 3> workgroup{1, 1, 1};  // work-items per workgroup
  std::array<uint32_t, 3> grid{0, 0, 0};   // workgroups; all 0 = nothing to run
  // Byte offset in `kernargs` of a u64 status address the queue fills in (a GTT word it
  // zeroes before the launch and checks after it); -1 when the kernel has none.
  int status_offset = -1;
  bool empty() const { return grid[0] == 0 || grid[1] == 0 || grid[2] == 0; }
};

// `address(tensor)` gives the GPU address of a tensor's first byte.
LaunchPlan plan_launch(std::string_view kernel, const KernelArgs& args,
                       const std::function<uint64_t(const Tensor&)>& address);

// The error a non-zero status word of softmax_xent_* means (label << 32 | row + 1).
[[noreturn]] void throw_label_status(std::string_view kernel, uint64_t status, int64_t classes);

}  // namespace petaring::amd
