// The GPU kernels of kernels.cl compiled for the host CPU: the same source text, with
// the OpenCL C qualifiers and the __builtin_amdgcn_* ids replaced by host equivalents.
// They read their kernargs from memory with the layouts of kernargs.h, exactly as the
// GPU code does, so a test can check the GPU source's arithmetic against the cpu
// backend without a GPU, and the mock KFD can run a dispatch as the kernel would.
//
// Execution model: workgroups run one after another. In a kernel that uses workgroup
// barriers (gemm, softmax_xent_forward, sum_squares), each work-item of the workgroup is
// a host thread and the barrier is a std::barrier; the others run their work-items in
// order on the calling thread. LDS arrays become function statics, so launches are
// serialized by a process-wide mutex. Small sizes only: this is for tests and mocks,
// not speed (a 64x64 gemm runs in milliseconds, a training-size one in seconds).
// __builtin_expf/logf/sqrtf are the host's here and the GPU's instructions there, so
// results may differ from the GPU's in the last bits; the indexing cannot.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace petaring::amd::gpu {

struct HostKernelInfo {
  std::string_view name;
  size_t kernarg_size = 0;           // sizeof its kernargs.h struct
  std::array<uint32_t, 3> workgroup{};  // its fixed workgroup size
  bool uses_barriers = false;
};

// Every kernel of kernels.cl: the f32 ones in the order of device/kernels.h, the helper
// attention_backward_kv (the second dispatch of attention_backward), then the
// mixed-precision ones and their helper attention_backward_kv_bf16.
const std::vector<HostKernelInfo>& host_kernels();

// Runs kernel `name` over `groups` workgroups of `workgroup` work-items, reading its
// kernarg struct from `kernargs` (kernarg_size bytes; the addresses inside are host
// pointers). Blocking. Throws kNotFound for an unknown name (listing the known ones) and
// kInvalidArgument when `workgroup` is not the kernel's fixed size or kernargs are short.
void run_host_kernel(std::string_view name, const void* kernargs, size_t kernarg_bytes,
                     const std::array<uint32_t, 3>& groups,
                     const std::array<uint32_t, 3>& workgroup);

}  // namespace petaring::amd::gpu
