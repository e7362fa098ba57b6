// User-mode hardware queues and signals of the amd backend, over a GpuAccess.
//
//   ring        a power-of-two byte buffer in GTT that the engine reads; the host writes
//               packets at the write pointer, the engine advances the read pointer.
//   pointers    64-bit byte counts that only grow (the ring offset is pointer mod size),
//               each in GTT where both sides see it.
//   padding     a packet never straddles the end of the ring: the rest of the ring is
//               filled with one NOP packet of the engine's own format first.
//   signal      16 bytes in GTT: value (u64; the queues use its low 32 bits as a
//               timeline, compared modulo 2^32 so that it may roll over) and timestamp
//               (u64, the GPU clock when the value was written).
//
// HwQueue is not thread-safe: one AmdQueue worker drives it.
#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "device/amd/gpu_access.h"

namespace petaring::amd {

// Sizes of a compute queue's context-save (CWSR) area, from the topology, as KFD
// computes and (since Linux 6.11) checks them at CREATE_QUEUE:
//   CUs = simd_count / simd_per_cu, waves = CUs * max_waves_per_simd * simd_per_cu
//   workgroup data = page_round((VGPRs + 16 KiB SGPRs + 64 KiB LDS + 4 KiB HW registers)
//                    per CU * CUs), VGPRs per CU 384 KiB on gfx1100/1101/1151/1200/1201,
//                    256 KiB on other gfx10/11, 512 KiB on gfx9
//   control stack  = page_round(12 bytes per wave (8 on gfx9) + 48)
//   save area      = workgroup data + control stack   (ctx_save_restore_size)
//   debugger area  = round_up(32 bytes per wave, 64), after the save area
//   allocation     = page_round((save area + debugger area) * XCCs)
// For an RX 7900 XTX (96 CUs, 3072 waves): 0x2bea000, control stack 0xa000,
// allocation 0x2c02000. Throws kFailedPrecondition naming what is missing when the
// topology lacks simd_per_cu or max_waves_per_simd.
// TODO(hw): KFD's own numbers on a real gfx1100 (its check rejects any other size).
struct ContextSaveSizes {
  uint32_t control_stack = 0;
  uint32_t save_area = 0;
  uint32_t debugger_area = 0;
  uint64_t allocation = 0;
};
ContextSaveSizes context_save_sizes(const AmdGpuInfo& gpu);

// Scratch (the private segment) for a dispatch of a kernel whose descriptor asks for
// `private_segment_size` bytes per work-item, laid out per wave as gfx11 expects:
//   per lane   = round_up(max(size, 128), 4) bytes, for 64 lanes (wave32 uses half)
//   wave bytes = round_up(64 * per lane, 256)   (COMPUTE_TMPRING_SIZE.WAVESIZE, 256 B units)
//   bytes      = per lane * 64 * max_slots_scratch_cu * CUs (one buffer for the queue)
//   waves      = bytes / wave bytes / shader engines, at most CUs * slots (TMPRING.WAVES)
//   COMPUTE_TMPRING_SIZE = WAVESIZE << 12 | WAVES; COMPUTE_DISPATCH_SCRATCH_BASE_LO/HI =
//   base >> 8. Throws kFailedPrecondition when the topology lacks the counts.
// TODO(hw): confirm the per-engine WAVES and the buffer size on a gfx1100.
struct ScratchLayout {
  uint32_t per_lane = 0;
  uint32_t wave_bytes = 0;
  uint32_t waves = 0;
  uint64_t bytes = 0;
  uint32_t tmpring_size = 0;
};
ScratchLayout scratch_layout(const AmdGpuInfo& gpu, uint32_t private_segment_size);

class HwQueue {
 public:
  // Allocates the ring (`ring_bytes`, a power of two >= 1 KiB), its pointers and, for
  // compute queues, the EOP buffer and context-save area, then creates the queue.
  HwQueue(GpuAccess& access, HardwareQueueKind kind, size_t ring_bytes, std::string name);
  ~HwQueue();
  HwQueue(const HwQueue&) = delete;
  HwQueue& operator=(const HwQueue&) = delete;

  // Copies `dwords` (whole packets) into the ring, padding its end first when they would
  // straddle it, and waiting (after a submit) while the ring has no room. `what` names
  // the packets for error messages. Does not ring the doorbell.
  void write(std::span<const uint32_t> dwords, std::string_view what);
  // Publishes the write pointer and rings the doorbell.
  void submit();

  uint64_t read_pointer() const { return *read_pointer_; }
  uint64_t write_pointer() const { return write_pointer_value_; }
  size_t ring_bytes() const { return ring_bytes_; }
  HardwareQueueKind kind() const { return kind_; }
  const std::string& name() const { return name_; }
  uint64_t pads() const { return pads_; }  // NOP paddings at the ring's end so far
  // "rptr 1024, wptr 1120 (ring 4096 bytes), last packets: RELEASE_MEM signal 7"
  std::string state() const;

  // Ring space wait: how long write() waits for the engine before giving up.
  static constexpr std::chrono::milliseconds kSpaceTimeout{10000};

 private:
  void copy_in(std::span<const uint32_t> dwords);
  void pad_to_end();
  void wait_for_space(uint64_t bytes, std::string_view what);

  GpuAccess& access_;
  HardwareQueueKind kind_;
  std::string name_;
  size_t ring_bytes_;
  GpuAllocation ring_, pointers_, eop_, context_save_;  // ring_ may be larger than the ring
  volatile uint64_t* read_pointer_ = nullptr;
  volatile uint64_t* write_pointer_ = nullptr;
  uint64_t write_pointer_value_ = 0;
  uint64_t pads_ = 0;
  std::string last_what_;
  HardwareQueue queue_;
};

// One 16-byte signal slot in its own GTT page.
class Signal {
 public:
  explicit Signal(GpuAccess& access);
  ~Signal();
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;

  uint64_t value_address() const { return memory_.gpu_address(); }
  uint64_t timestamp_address() const { return memory_.gpu_address() + 8; }
  uint32_t value() const { return static_cast<uint32_t>(slot()[0]); }
  uint64_t timestamp() const { return slot()[1]; }
  void reset(uint32_t value);  // host write, for a fresh timeline

  // True when the 32-bit timeline has reached `target` (modulo 2^32: a target up to 2^31
  // ahead of the value counts as not reached).
  static bool reached(uint32_t value, uint32_t target) {
    return static_cast<int32_t>(value - target) >= 0;
  }
  // The signal's KFD event (invalid when the access path has none).
  const GpuEvent& event() const { return event_; }
  // Packets to append after the ones that write the signal, so that a sleeping wait()
  // wakes: the event id into the event's mailbox, then an interrupt with that context id
  // (PM4: RELEASE_MEM with INT_SEL; SDMA: FENCE then TRAP). Empty without an event.
  std::vector<uint32_t> pm4_notify() const;
  std::vector<uint32_t> sdma_notify() const;

  // Waits until reached(value(), target): polls for kPollTime, then sleeps in
  // WAIT_EVENTS on the signal's event and the fault events (a GPU fault becomes an
  // error), until `timeout`. Without an event it sleeps on the fault events in
  // kSleepSlice slices and polls between them. On timeout throws kTimeout naming `who`
  // and `state` (the queue's pointers and last packets).
  void wait(uint32_t target, std::chrono::milliseconds timeout, const std::string& who,
            const std::function<std::string()>& state) const;

  static constexpr std::chrono::microseconds kPollTime{50};
  static constexpr std::chrono::milliseconds kSleepSlice{2};

 private:
  const volatile uint64_t* slot() const {
    return static_cast<const volatile uint64_t*>(memory_.address);
  }
  GpuAccess& access_;
  GpuAllocation memory_;
  GpuEvent event_;
};

}  // namespace petaring::amd
