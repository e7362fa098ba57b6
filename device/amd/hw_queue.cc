#include "device/amd/hw_queue.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "device/amd/pm4.h"
#include "device/amd/sdma.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring::amd {
namespace {

constexpr size_t kEopBytes = 4096;
constexpr uint64_t kPage = 4096;

uint64_t round_up_to(uint64_t value, uint64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

}  // namespace

ScratchLayout scratch_layout(const AmdGpuInfo& gpu, uint32_t private_segment_size) {
  if (gpu.simd_per_cu <= 0 || gpu.simd_count <= 0 || gpu.max_slots_scratch_cu <= 0 ||
      gpu.array_count <= 0 || gpu.simd_arrays_per_engine <= 0) {
    PR_FAIL(kFailedPrecondition, gpu.arch, " (", gpu.pci_address, ", KFD node ", gpu.node,
            "): the topology lacks simd_per_cu, max_slots_scratch_cu, array_count or "
            "simd_arrays_per_engine; a kernel that needs scratch cannot be dispatched");
  }
  constexpr uint64_t kLanes = 64, kAlign = 256;
  const uint64_t cus = static_cast<uint64_t>(gpu.simd_count / gpu.simd_per_cu);
  const uint64_t slots = static_cast<uint64_t>(gpu.max_slots_scratch_cu);
  const uint64_t engines =
      std::max<uint64_t>(1, static_cast<uint64_t>(gpu.array_count / gpu.simd_arrays_per_engine));
  ScratchLayout s;
  s.per_lane = static_cast<uint32_t>(round_up_to(std::max<uint32_t>(private_segment_size, 128),
                                                 kAlign / kLanes));
  s.wave_bytes = static_cast<uint32_t>(round_up_to(kLanes * s.per_lane, kAlign));
  s.bytes = uint64_t{s.per_lane} * kLanes * slots * cus;
  s.waves = static_cast<uint32_t>(std::min(s.bytes / s.wave_bytes / engines, cus * slots));
  s.tmpring_size = (s.wave_bytes / static_cast<uint32_t>(kAlign)) << 12 | (s.waves & 0xfff);
  return s;
}

ContextSaveSizes context_save_sizes(const AmdGpuInfo& gpu) {
  if (gpu.simd_per_cu <= 0 || gpu.max_waves_per_simd <= 0 || gpu.simd_count <= 0) {
    PR_FAIL(kFailedPrecondition, gpu.arch, " (", gpu.pci_address, ", KFD node ", gpu.node,
            "): the topology gives simd_count ", gpu.simd_count, ", simd_per_cu ",
            gpu.simd_per_cu, ", max_waves_per_simd ", gpu.max_waves_per_simd,
            "; all are needed to size a compute queue's context-save area (is the KFD "
            "topology from a kernel older than 5.x?)");
  }
  const uint32_t major = gpu.gfx_target_version / 10000;
  const uint32_t version = gpu.gfx_target_version;
  const uint64_t cus = static_cast<uint64_t>(gpu.simd_count / gpu.simd_per_cu) /
                       static_cast<uint64_t>(gpu.num_xcc);
  const uint64_t waves = cus * static_cast<uint64_t>(gpu.max_waves_per_simd * gpu.simd_per_cu);
  const bool big_vgprs = version == 110000 || version == 110001 || version == 110501 ||
                         version == 120000 || version == 120001;
  const uint64_t vgprs = major == 9 ? 0x80000 : big_vgprs ? 0x60000 : 0x40000;
  const uint64_t per_cu = vgprs + 0x4000 /* SGPRs */ + 0x10000 /* LDS */ + 0x1000 /* HW regs */;
  ContextSaveSizes s;
  s.control_stack = static_cast<uint32_t>(round_up_to((major == 9 ? 8 : 12) * waves + 8 + 40, kPage));
  s.save_area = static_cast<uint32_t>(round_up_to(per_cu * cus, kPage) + s.control_stack);
  s.debugger_area = static_cast<uint32_t>(round_up_to(32 * waves, 64));
  s.allocation = round_up_to((uint64_t{s.save_area} + s.debugger_area) * gpu.num_xcc, kPage);
  return s;
}

HwQueue::HwQueue(GpuAccess& access, HardwareQueueKind kind, size_t ring_bytes, std::string name)
    : access_(access), kind_(kind), name_(std::move(name)), ring_bytes_(ring_bytes) {
  PR_CHECK(ring_bytes >= 1024 && (ring_bytes & (ring_bytes - 1)) == 0) << "ring of " << ring_bytes;
  // Before any allocation: it throws when the topology cannot size the area.
  const ContextSaveSizes sizes =
      kind == HardwareQueueKind::kComputePm4 ? context_save_sizes(access_.gpu()) : ContextSaveSizes{};
  ring_ = access_.allocate(ring_bytes, MemoryKind::kGtt, true);
  pointers_ = access_.allocate(4096, MemoryKind::kGtt, true);
  std::memset(ring_.address, 0, ring_.size);
  std::memset(pointers_.address, 0, pointers_.size);
  read_pointer_ = static_cast<volatile uint64_t*>(pointers_.address);
  write_pointer_ = read_pointer_ + 8;  // its own 64-byte line
  HardwareQueueSetup setup;
  setup.kind = kind;
  setup.ring = ring_;
  setup.ring.size = ring_bytes_;  // the allocation is rounded up to a page
  setup.read_pointer = read_pointer_;
  setup.write_pointer = write_pointer_;
  if (kind == HardwareQueueKind::kComputePm4) {
    eop_ = access_.allocate(kEopBytes, MemoryKind::kVram, false);
    context_save_ = access_.allocate(sizes.allocation, MemoryKind::kGtt, true);
    setup.eop_buffer = eop_;
    setup.context_save = context_save_;
    setup.context_save_bytes = sizes.save_area;
    setup.control_stack_bytes = sizes.control_stack;
  }
  queue_ = access_.create_queue(setup);
}

HwQueue::~HwQueue() {
  try {
    access_.destroy_queue(queue_);
    access_.free(context_save_);
    access_.free(eop_);
    access_.free(pointers_);
    access_.free(ring_);
  } catch (const std::exception& e) {
    PR_LOG(kWarn) << name_ << ": releasing the hardware queue failed: " << e.what();
  }
}

std::string HwQueue::state() const {
  return str_cat("rptr ", *read_pointer_, ", wptr ", write_pointer_value_, " (ring ", ring_bytes_,
                 " bytes, ", kind_ == HardwareQueueKind::kSdma ? "SDMA" : "PM4",
                 " queue), last packets: ", last_what_.empty() ? "none" : last_what_);
}

void HwQueue::wait_for_space(uint64_t bytes, std::string_view what) {
  if (write_pointer_value_ + bytes - *read_pointer_ <= ring_bytes_) return;
  submit();  // the engine can only make room for what it has been told about
  const auto deadline = std::chrono::steady_clock::now() + kSpaceTimeout;
  while (write_pointer_value_ + bytes - *read_pointer_ > ring_bytes_) {
    if (std::chrono::steady_clock::now() > deadline) {
      PR_FAIL(kTimeout, name_, ": no room in the ring for ", what, " (", bytes, " bytes) after ",
              kSpaceTimeout.count(), " ms; the engine is not consuming packets: ", state());
    }
    access_.sleep_for_event(std::chrono::milliseconds(1));
  }
}

void HwQueue::copy_in(std::span<const uint32_t> dwords) {
  auto* ring = static_cast<uint32_t*>(ring_.address);
  const size_t ring_dwords = ring_bytes_ / 4;
  size_t at = (write_pointer_value_ / 4) % ring_dwords;
  PR_CHECK_LE(at + dwords.size(), ring_dwords) << name_ << " packet straddles the ring end";
  std::memcpy(ring + at, dwords.data(), dwords.size_bytes());
  write_pointer_value_ += dwords.size_bytes();
}

void HwQueue::pad_to_end() {
  const size_t ring_dwords = ring_bytes_ / 4;
  const auto left = static_cast<uint32_t>(ring_dwords - (write_pointer_value_ / 4) % ring_dwords);
  std::vector<uint32_t> nop;
  if (kind_ == HardwareQueueKind::kSdma) {
    sdma::encode(sdma::Nop{left}, &nop);
  } else {
    pm4::encode(pm4::Nop{left}, &nop);
  }
  PR_CHECK_EQ(nop.size(), left) << name_ << " NOP padding";
  copy_in(nop);
  ++pads_;
}

void HwQueue::write(std::span<const uint32_t> dwords, std::string_view what) {
  const size_t ring_dwords = ring_bytes_ / 4;
  PR_CHECK_LT(dwords.size(), ring_dwords / 2) << name_ << ": " << what << " is too large for the ring";
  const size_t at = (write_pointer_value_ / 4) % ring_dwords;
  if (at + dwords.size() > ring_dwords) {
    wait_for_space((ring_dwords - at + dwords.size()) * 4, what);
    pad_to_end();
  } else {
    wait_for_space(dwords.size_bytes(), what);
  }
  copy_in(dwords);
  last_what_ = std::string(what);
}

void HwQueue::submit() {
  std::atomic_thread_fence(std::memory_order_release);
  *write_pointer_ = write_pointer_value_;
  access_.ring_doorbell(queue_, write_pointer_value_);
}

Signal::Signal(GpuAccess& access) : access_(access) {
  memory_ = access_.allocate(4096, MemoryKind::kGtt, true);
  std::memset(memory_.address, 0, memory_.size);
  try {
    event_ = access_.create_signal_event();
  } catch (...) {
    access_.free(memory_);
    throw;
  }
}

std::vector<uint32_t> Signal::pm4_notify() const {
  if (!event_.valid()) return {};
  pm4::Writer w;
  w.release_mem(event_.mailbox, event_.id, pm4::IntSel::kInterruptAfterWriteConfirm, event_.id);
  return w.dwords();
}

std::vector<uint32_t> Signal::sdma_notify() const {
  if (!event_.valid()) return {};
  sdma::Writer w;
  w.fence(event_.mailbox, event_.id).trap(event_.id);
  return w.dwords();
}

Signal::~Signal() {
  try {
    access_.destroy_event(event_);
    access_.free(memory_);
  } catch (const std::exception& e) {
    PR_LOG(kWarn) << "releasing a signal failed: " << e.what();
  }
}

void Signal::reset(uint32_t value) {
  auto* s = static_cast<volatile uint64_t*>(memory_.address);
  s[0] = value;
  s[1] = 0;
}

void Signal::wait(uint32_t target, std::chrono::milliseconds timeout, const std::string& who,
                  const std::function<std::string()>& state) const {
  const auto start = std::chrono::steady_clock::now();
  while (!reached(value(), target)) {  // poll: most waits end here on hardware
    if (std::chrono::steady_clock::now() - start > kPollTime) break;
  }
  const auto deadline = start + timeout;
  while (!reached(value(), target)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      PR_FAIL(kTimeout, who, ": signal at ", value_address(), " still ", value(),
              " after ", timeout.count(), " ms, waiting for ", target,
              "; the GPU did not finish the work: ", state());
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) +
                      std::chrono::milliseconds(1);
    if (event_.valid()) {
      // Work that writes this signal is followed by notify packets: the interrupt wakes
      // us, and an event that fired before we slept stays set until waited on.
      access_.sleep_for_event(left, event_);
    } else {
      access_.sleep_for_event(std::min<std::chrono::milliseconds>(kSleepSlice, left));
    }
  }
}

}  // namespace petaring::amd
