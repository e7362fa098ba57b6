// kernels.cl compiled as C++ for the host; see host_kernels.h.
#include "device/amd/gpu/host_kernels.h"

#include <atomic>
#include <barrier>
#include <cstring>
#include <mutex>
#include <thread>

#include "device/amd/gpu/kernargs.h"
#include "runtime/check.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

namespace petaring::amd::gpu {
namespace {

// The work-item the current host thread plays.
struct WorkItem {
  uint32_t item[3] = {0, 0, 0};  // the work-item id in its workgroup
  uint32_t group[3] = {0, 0, 0};
  std::barrier<>* barrier = nullptr;  // null in kernels run without barriers
};
thread_local WorkItem current;

void host_barrier() {
  PR_CHECK(current.barrier != nullptr) << "a kernel listed without barriers called one";
  current.barrier->arrive_and_wait();
}

}  // namespace

// ---- kernels.cl, as C++. The macros map OpenCL C and the AMDGPU builtins onto the host.
namespace host {
using uint = uint32_t;
using ulong = uint64_t;
using uchar = unsigned char;
using ushort = uint16_t;
#define kernel
#define global
#define local
#define PR_LDS static
#define PR_WORKGROUP_SIZE(x, y, z)
#define __builtin_amdgcn_workitem_id_x() current.item[0]
#define __builtin_amdgcn_workitem_id_y() current.item[1]
#define __builtin_amdgcn_workgroup_id_x() current.group[0]
#define __builtin_amdgcn_workgroup_id_y() current.group[1]
#define __builtin_amdgcn_fence(order, scope) std::atomic_thread_fence(std::memory_order_seq_cst)
#define __builtin_amdgcn_s_barrier() host_barrier()
#define pr_float_from_bits(u) ::petaring::f32_from_bits(u)
#define pr_bits_from_float(f) ::petaring::f32_bits(f)
#include "device/amd/gpu/kernels.cl"
#undef kernel
#undef global
#undef local
#undef PR_LDS
#undef PR_WORKGROUP_SIZE
#undef __builtin_amdgcn_workitem_id_x
#undef __builtin_amdgcn_workitem_id_y
#undef __builtin_amdgcn_workgroup_id_x
#undef __builtin_amdgcn_workgroup_id_y
#undef __builtin_amdgcn_fence
#undef __builtin_amdgcn_s_barrier
#undef pr_float_from_bits
#undef pr_bits_from_float
}  // namespace host

namespace {

struct Entry {
  HostKernelInfo info;
  void (*run)(const void* kernargs);
};

// Copies the kernarg struct out of memory, as the GPU's scalar loads would, and runs.
template <typename Args, void (*Kernel)(Args)>
void call(const void* kernargs) {
  Args args;
  std::memcpy(&args, kernargs, sizeof args);
  Kernel(args);
}

template <typename Args, void (*Kernel)(Args)>
Entry entry(std::string_view name, std::array<uint32_t, 3> workgroup, bool barriers) {
  return Entry{HostKernelInfo{name, sizeof(Args), workgroup, barriers}, &call<Args, Kernel>};
}

const std::vector<Entry>& entries() {
  constexpr std::array<uint32_t, 3> k1d = {PR_BLOCK, 1, 1};
  constexpr std::array<uint32_t, 3> kTile = {PR_GEMM_TILE, PR_GEMM_TILE, 1};
  static const std::vector<Entry> table = {
      entry<PrGemmArgs, host::gemm>("gemm", kTile, true),
      entry<PrBiasAddArgs, host::bias_add>("bias_add", k1d, false),
      entry<PrBiasGradArgs, host::bias_grad>("bias_grad", k1d, false),
      entry<PrReluArgs, host::relu>("relu", k1d, false),
      entry<PrReluBackwardArgs, host::relu_backward>("relu_backward", k1d, false),
      entry<PrSoftmaxXentForwardArgs, host::softmax_xent_forward>("softmax_xent_forward", k1d,
                                                                  true),
      entry<PrSoftmaxXentBackwardArgs, host::softmax_xent_backward>("softmax_xent_backward",
                                                                    k1d, false),
      entry<PrSgdMomentumArgs, host::sgd_momentum>("sgd_momentum", k1d, false),
      entry<PrAdamwArgs, host::adamw>("adamw", k1d, false),
      entry<PrSumSquaresArgs, host::sum_squares>("sum_squares", k1d, true),
      entry<PrFillArgs, host::fill>("fill", k1d, false),
      entry<PrCopyArgs, host::copy>("copy", k1d, false),
      entry<PrScaleArgs, host::scale>("scale", k1d, false),
      entry<PrEmbeddingForwardArgs, host::embedding_forward>("embedding_forward", k1d, false),
      entry<PrEmbeddingBackwardArgs, host::embedding_backward>("embedding_backward", k1d, false),
      entry<PrLayernormForwardArgs, host::layernorm_forward>("layernorm_forward", k1d, false),
      entry<PrLayernormBackwardArgs, host::layernorm_backward>("layernorm_backward", k1d, false),
      entry<PrGeluArgs, host::gelu>("gelu", k1d, false),
      entry<PrGeluBackwardArgs, host::gelu_backward>("gelu_backward", k1d, false),
      entry<PrAddArgs, host::add>("add", k1d, false),
      entry<PrAttentionForwardArgs, host::attention_forward>("attention_forward", k1d, false),
      entry<PrAttentionBackwardArgs, host::attention_backward>("attention_backward", k1d, false),
      entry<PrAttentionBackwardArgs, host::attention_backward_kv>("attention_backward_kv", k1d,
                                                                  false),
      entry<PrConvertArgs, host::convert>("convert", k1d, false),
      entry<PrScratchProbeArgs, host::scratch_probe>("scratch_probe", k1d, false),
      entry<PrGemmArgs, host::gemm_bf16>("gemm_bf16", kTile, true),
      entry<PrLinearArgs, host::linear_bf16>("linear_bf16", kTile, true),
      entry<PrLayernormForwardArgs, host::layernorm_forward_bf16>("layernorm_forward_bf16", k1d,
                                                                  false),
      entry<PrGeluArgs, host::gelu_bf16>("gelu_bf16", k1d, false),
      entry<PrGeluBackwardArgs, host::gelu_backward_bf16>("gelu_backward_bf16", k1d, false),
      entry<PrAttentionForwardArgs, host::attention_forward_bf16>("attention_forward_bf16", k1d,
                                                                  false),
      entry<PrAttentionBackwardArgs, host::attention_backward_bf16>("attention_backward_bf16",
                                                                    k1d, false),
      entry<PrAttentionBackwardArgs, host::attention_backward_kv_bf16>(
          "attention_backward_kv_bf16", k1d, false),
  };
  return table;
}

std::mutex& launch_mutex() {
  static std::mutex mutex;
  return mutex;
}

void set_group(size_t index, const std::array<uint32_t, 3>& groups) {
  current.group[0] = static_cast<uint32_t>(index % groups[0]);
  current.group[1] = static_cast<uint32_t>(index / groups[0] % groups[1]);
  current.group[2] = static_cast<uint32_t>(index / (size_t(groups[0]) * groups[1]));
}

void set_local(size_t index, const std::array<uint32_t, 3>& workgroup) {
  current.item[0] = static_cast<uint32_t>(index % workgroup[0]);
  current.item[1] = static_cast<uint32_t>(index / workgroup[0] % workgroup[1]);
  current.item[2] = static_cast<uint32_t>(index / (size_t(workgroup[0]) * workgroup[1]));
}

}  // namespace

const std::vector<HostKernelInfo>& host_kernels() {
  static const std::vector<HostKernelInfo> infos = [] {
    std::vector<HostKernelInfo> out;
    for (const Entry& e : entries()) out.push_back(e.info);
    return out;
  }();
  return infos;
}

void run_host_kernel(std::string_view name, const void* kernargs, size_t kernarg_bytes,
                     const std::array<uint32_t, 3>& groups,
                     const std::array<uint32_t, 3>& workgroup) {
  const Entry* found = nullptr;
  std::string names;
  for (const Entry& e : entries()) {
    if (e.info.name == name) found = &e;
    names += (names.empty() ? "" : ", ") + std::string(e.info.name);
  }
  if (found == nullptr) PR_FAIL(kNotFound, "no GPU kernel '", name, "'; there are: ", names);
  const HostKernelInfo& info = found->info;
  if (workgroup != info.workgroup) {
    PR_FAIL(kInvalidArgument, "GPU kernel ", name, " launched with workgroup ", workgroup[0],
            "x", workgroup[1], "x", workgroup[2], "; it is built for ", info.workgroup[0], "x",
            info.workgroup[1], "x", info.workgroup[2]);
  }
  if (kernarg_bytes < info.kernarg_size) {
    PR_FAIL(kInvalidArgument, "GPU kernel ", name, " needs ", info.kernarg_size,
            " kernarg bytes, got ", kernarg_bytes);
  }
  const size_t group_count = size_t(groups[0]) * groups[1] * groups[2];
  const size_t items = size_t(workgroup[0]) * workgroup[1] * workgroup[2];
  std::lock_guard<std::mutex> lock(launch_mutex());
  if (!info.uses_barriers) {
    for (size_t g = 0; g < group_count; ++g) {
      set_group(g, groups);
      for (size_t i = 0; i < items; ++i) {
        set_local(i, workgroup);
        found->run(kernargs);
      }
    }
    return;
  }
  // One thread per work-item; all meet at the end of each workgroup, so the next
  // workgroup's LDS writes cannot overtake this one's reads.
  std::barrier<> sync(static_cast<std::ptrdiff_t>(items));
  std::vector<std::thread> threads;
  threads.reserve(items);
  for (size_t i = 0; i < items; ++i) {
    threads.emplace_back([&, i] {
      current.barrier = &sync;
      set_local(i, workgroup);
      for (size_t g = 0; g < group_count; ++g) {
        set_group(g, groups);
        found->run(kernargs);
        sync.arrive_and_wait();
      }
      current.barrier = nullptr;
    });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace petaring::amd::gpu
