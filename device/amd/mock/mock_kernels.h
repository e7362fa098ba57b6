// The mock KFD's dispatch handler: runs a DISPATCH_DIRECT on the CPU.
//
// It finds which kernel the registers name the way a GPU would see it, by memory: for
// each kernel of the code object it compares the 64-byte kernel descriptor that would
// sit `entry_byte_offset` before COMPUTE_PGM_LO/HI, and the first code bytes, with the
// image; none matching faults the queue. It then reads the kernarg pointer from the user
// SGPRs the descriptor enables, decodes the kernel's Pr*Args struct
// (device/amd/gpu/kernargs.h) from memory, checks every buffer range against the GPU
// mappings and the grid against the element count, and runs the CPU twin: the cpu
// backend's kernel (device/cpu/cpu_kernels.h) over those addresses, or for adamw the same
// loop over the per-step scalars the GPU receives. Like the GPU kernels, softmax and
// embedding twins report a label or token out of range through the status word instead
// of failing. attention_backward is two dispatches on the GPU: the twin of the first
// computes the whole gradient, the second (attention_backward_kv) is checked only.
//
// With MockKernels::kGpuSource the checks are the same, but the dispatch then runs the
// GPU kernel's own source compiled for the host (device/amd/gpu/host_kernels.h) over the
// dispatched grid and workgroup: slower, and it checks the launch shapes and kernargs the
// driver writes against what the GPU code does with them.
#pragma once

#include <memory>

#include "device/amd/code_object.h"
#include "device/amd/mock/mock_executor.h"

namespace petaring::amd {

enum class MockKernels { kCpuBackend, kGpuSource };

MockDispatchHandler make_mock_kernel_runner(std::shared_ptr<const CodeObject> code_object,
                                            MockKernels kernels = MockKernels::kCpuBackend);

}  // namespace petaring::amd
