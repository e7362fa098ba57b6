#include "device/amd/amd_queue.h"

#include <cstring>

#include "device/amd/launch_plan.h"
#include "device/amd/pm4.h"
#include "device/amd/sdma.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring::amd {
namespace {

constexpr uint32_t kRsrc1Priv = 1u << 20;  // gfx11 workaround for context save/restore
constexpr size_t kStatusOffset = 2048;     // in the kernarg page

}  // namespace

// The GPU-side resources of a queue, recreated after a fault.
struct AmdQueue::Hardware {
  Hardware(AmdDevice& device, const std::string& name, uint32_t first_value)
      : compute(device.access(), HardwareQueueKind::kComputePm4, device.options().ring_bytes,
                name + " PM4"),
        copy(device.access(), HardwareQueueKind::kSdma, device.options().ring_bytes, name + " SDMA"),
        signal(device.access()),
        timeline(first_value),
        access(device.access()) {
    signal.reset(first_value);
    staging = access.allocate(device.options().staging_bytes, MemoryKind::kGtt, true);
    kernargs = access.allocate(4096, MemoryKind::kGtt, true);
  }
  ~Hardware() {
    if (scratch.address != nullptr) access.free(scratch);
    access.free(kernargs);
    access.free(staging);
  }
  HwQueue compute, copy;
  Signal signal;
  uint32_t timeline;
  GpuAccess& access;
  GpuAllocation staging, kernargs;
  GpuAllocation scratch;  // grown for kernels with a private segment
};

AmdQueue::AmdQueue(AmdDevice& device, std::string name)
    : CpuQueue(device, std::move(name)), amd_(device) {
  hw_ = std::make_unique<Hardware>(amd_, this->name(), amd_.options().first_signal_value);
}

AmdQueue::~AmdQueue() {
  // Drain the worker before the GPU resources go (CpuQueue's destructor runs after ours).
  try {
    record()->wait();
  } catch (const std::exception&) {
    // reported (or logged) by CpuQueue
  }
}

void AmdQueue::check_tensor(const Tensor& tensor, const char* role) const {
  PR_CHECK(tensor.buffer != nullptr) << role << " on " << name() << " has no buffer";
  if (tensor.buffer->device_name() != amd_.name()) {
    PR_FAIL(kInvalidArgument, name(), ": ", role, " lives on ", tensor.buffer->device_name(),
            ", not on ", amd_.name(), "; move it with a host copy (read, then write) first");
  }
}

uint64_t AmdQueue::address(const Tensor& tensor) const {
  check_tensor(tensor, "tensor");
  auto* base = static_cast<char*>(tensor.buffer->host_data());
  PR_CHECK(base != nullptr) << "amd buffers are mapped for the CPU";
  return reinterpret_cast<uint64_t>(base + tensor.offset);
}

void AmdQueue::finish(HwQueue& ring, const std::string& what) {
  try {
    hw_->signal.wait(hw_->timeline, amd_.options().timeout, str_cat(ring.name(), ": ", what),
                     [&] { return ring.state(); });
  } catch (...) {
    // The queue is faulted (or stuck): give it back and start over with fresh rings.
    const uint32_t next = hw_->timeline + 1;
    hw_.reset();
    hw_ = std::make_unique<Hardware>(amd_, name(), next);
    throw;
  }
}

void AmdQueue::submit_compute(std::vector<uint32_t> dwords, const std::string& what) {
  Hardware& hw = *hw_;
  ++hw.timeline;
  pm4::ReleaseMem stamp;
  stamp.data_sel = pm4::DataSel::kTimestamp;
  stamp.address = hw.signal.timestamp_address();
  pm4::encode(stamp, &dwords);
  pm4::Writer release;
  release.release_mem(hw.signal.value_address(), hw.timeline);
  dwords.insert(dwords.end(), release.dwords().begin(), release.dwords().end());
  const std::vector<uint32_t> notify = hw.signal.pm4_notify();
  dwords.insert(dwords.end(), notify.begin(), notify.end());
  hw.compute.write(dwords, what);
  hw.compute.submit();
  finish(hw.compute, what);
}

void AmdQueue::submit_copy(std::vector<uint32_t> dwords, const std::string& what) {
  Hardware& hw = *hw_;
  ++hw.timeline;
  sdma::Writer tail;
  tail.timestamp(hw.signal.timestamp_address()).fence(hw.signal.value_address(), hw.timeline);
  dwords.insert(dwords.end(), tail.dwords().begin(), tail.dwords().end());
  const std::vector<uint32_t> notify = hw.signal.sdma_notify();
  dwords.insert(dwords.end(), notify.begin(), notify.end());
  hw.copy.write(dwords, what);
  hw.copy.submit();
  finish(hw.copy, what);
}

void AmdQueue::sdma_copy(uint64_t dst, uint64_t src, uint64_t bytes, const char* what) {
  sdma::Writer w;
  w.copy(dst, src, bytes);
  submit_copy(w.dwords(), what);
}

void AmdQueue::run_kernel(const AmdKernel& kernel, const KernelArgs& args) {
  const std::vector<LaunchPlan> plans =
      plan_launch(kernel.name(), args, [this](const Tensor& t) { return address(t); });
  for (const LaunchPlan& plan : plans) {
    const AmdKernel* step = plan.kernel == kernel.name() ? &kernel : amd_.find_gpu_kernel(plan.kernel);
    if (step == nullptr) {
      PR_FAIL(kNotFound, name(), ": ", kernel.name(), " needs the GPU kernel '", plan.kernel,
              "', which the code object lacks; rebuild the gfx1100 code objects");
    }
    dispatch(*step, plan, args);
  }
}

void AmdQueue::dispatch(const AmdKernel& kernel, const LaunchPlan& plan, const KernelArgs& args) {
  if (plan.empty()) return;
  Hardware& hw = *hw_;
  const KernelInfo& info = kernel.info();
  PR_CHECK_LE(plan.kernargs.size(), kStatusOffset) << kernel.name() << " kernargs";
  auto* kernargs = static_cast<uint8_t*>(hw.kernargs.address);
  auto* status = reinterpret_cast<volatile uint64_t*>(kernargs + kStatusOffset);
  std::vector<uint8_t> bytes = plan.kernargs;
  if (plan.status_offset >= 0) {
    *status = 0;
    const uint64_t status_address = hw.kernargs.gpu_address() + kStatusOffset;
    std::memcpy(bytes.data() + plan.status_offset, &status_address, 8);
  }
  std::memcpy(kernargs, bytes.data(), bytes.size());

  const int user_index = info.user_sgprs.kernarg_segment_ptr_index();
  PR_CHECK(user_index >= 0 && user_index + 1 < info.user_sgprs.count)
      << kernel.name() << " has no kernarg pointer among its " << info.user_sgprs.count
      << " user SGPRs";
  std::vector<uint32_t> user(static_cast<size_t>(info.user_sgprs.count), 0);
  user[static_cast<size_t>(user_index)] = static_cast<uint32_t>(hw.kernargs.gpu_address());
  user[static_cast<size_t>(user_index) + 1] = static_cast<uint32_t>(hw.kernargs.gpu_address() >> 32);
  // TODO(hw): the dispatch and queue pointers for kernels that enable them (ours do not).
  const uint64_t entry = kernel.entry_address();
  pm4::Writer w;
  w.acquire_mem();
  if (info.scratch_enabled || info.private_segment_size > 0) {
    const ScratchLayout layout = scratch_layout(amd_.access().gpu(), info.private_segment_size);
    if (hw.scratch.size < layout.bytes) {  // earlier dispatches have finished: regrow
      if (hw.scratch.address != nullptr) hw.access.free(hw.scratch);
      hw.scratch = GpuAllocation{};
      try {
        hw.scratch = hw.access.allocate(layout.bytes, MemoryKind::kVram, false);
      } catch (const Error& error) {
        throw Error(error.kind(), str_cat(name(), ": GPU kernel '", kernel.name(), "' needs ",
                                          info.private_segment_size, " bytes of scratch per work-item, ",
                                          layout.bytes, " bytes of VRAM for the queue's scratch; ",
                                          error.what()));
      }
    }
    const uint64_t base = hw.scratch.gpu_address();
    w.set_sh_reg(pm4::reg::kComputeTmpringSize, {layout.tmpring_size})
        .set_sh_reg(pm4::reg::kComputeDispatchScratchBaseLo,
                    {static_cast<uint32_t>(base >> 8), static_cast<uint32_t>(base >> 40)});
    // TODO(hw): the buffer descriptor's word 3 (format, OOB select, ADD_TID) for gfx11.
    if (info.user_sgprs.private_segment_buffer && user.size() >= 4) {
      user[0] = static_cast<uint32_t>(base);
      user[1] = static_cast<uint32_t>(base >> 32) | 1u << 31;  // SWIZZLE_ENABLE
      user[2] = 0xffffffffu;                                    // NUM_RECORDS
      user[3] = 0x20c14000u;
    }
    const int fsi = info.user_sgprs.flat_scratch_init_index();
    if (fsi >= 0 && fsi + 1 < static_cast<int>(user.size())) {
      user[static_cast<size_t>(fsi)] = static_cast<uint32_t>(base);
      user[static_cast<size_t>(fsi) + 1] = static_cast<uint32_t>(base >> 32);
    }
    const int psi = info.user_sgprs.private_segment_size_index();
    if (psi >= 0 && psi < static_cast<int>(user.size())) {
      user[static_cast<size_t>(psi)] = layout.per_lane;
    }
  }
  w
      .set_sh_reg(pm4::reg::kComputePgmLo,
                  {static_cast<uint32_t>(entry >> 8), static_cast<uint32_t>(entry >> 40)})
      .set_sh_reg(pm4::reg::kComputePgmRsrc1, {info.rsrc1 | kRsrc1Priv, info.rsrc2})
      .set_sh_reg(pm4::reg::kComputePgmRsrc3, {info.rsrc3})
      .set_sh_reg(pm4::reg::kComputeUserData0, user)
      .set_sh_reg(pm4::reg::kComputeNumThreadX,
                  {plan.workgroup[0], plan.workgroup[1], plan.workgroup[2]})
      .dispatch_direct(plan.grid[0], plan.grid[1], plan.grid[2], info.wavefront_size == 32)
      .event_write();
  submit_compute(w.dwords(), std::string(kernel.name()));
  if (plan.status_offset >= 0 && *status != 0) {
    throw_launch_status(kernel.name(), *status, args);
  }
}

void AmdQueue::launch(const Kernel& kernel, KernelArgs args) {
  const auto* amd_kernel = dynamic_cast<const AmdKernel*>(&kernel);
  if (amd_kernel == nullptr || amd_.find_gpu_kernel(kernel.name()) != amd_kernel) {
    PR_FAIL(kInvalidArgument, name(), ": kernel '", kernel.name(), "' does not belong to ",
            amd_.name(), "; look it up with find_kernel() on ", amd_.name());
  }
  host_call([this, amd_kernel, args = std::move(args)] { run_kernel(*amd_kernel, args); });
}

void AmdQueue::write(Tensor dst, const void* src) {
  check_tensor(dst, "write destination");
  PR_CHECK(src != nullptr || dst.bytes() == 0) << "write to " << name();
  host_call([this, dst, src] {
    const uint64_t base = address(dst);
    const size_t chunk = hw_->staging.size;
    for (size_t done = 0; done < dst.bytes(); done += chunk) {
      const size_t n = std::min(chunk, dst.bytes() - done);
      std::memcpy(hw_->staging.address, static_cast<const char*>(src) + done, n);
      sdma_copy(base + done, hw_->staging.gpu_address(), n, "write (host to device)");
    }
  });
}

void AmdQueue::read(void* dst, Tensor src) {
  check_tensor(src, "read source");
  PR_CHECK(dst != nullptr || src.bytes() == 0) << "read from " << name();
  host_call([this, dst, src] {
    const uint64_t base = address(src);
    const size_t chunk = hw_->staging.size;
    for (size_t done = 0; done < src.bytes(); done += chunk) {
      const size_t n = std::min(chunk, src.bytes() - done);
      sdma_copy(hw_->staging.gpu_address(), base + done, n, "read (device to host)");
      std::memcpy(static_cast<char*>(dst) + done, hw_->staging.address, n);
    }
  });
}

void AmdQueue::copy(Tensor dst, Tensor src) {
  check_tensor(dst, "copy destination");
  check_tensor(src, "copy source");
  if (dst.bytes() != src.bytes()) {
    PR_FAIL(kInvalidArgument, name(), ": copy of ", src.shape, " ", dtype_name(src.dtype), " (",
            src.bytes(), " bytes) into ", dst.shape, " ", dtype_name(dst.dtype), " (",
            dst.bytes(), " bytes): sizes must match");
  }
  host_call([this, dst, src] {
    if (src.bytes() > 0) sdma_copy(address(dst), address(src), src.bytes(), "copy");
  });
}

}  // namespace petaring::amd
