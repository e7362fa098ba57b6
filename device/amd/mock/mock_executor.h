// MockExecutor: the part of the mock KFD (mock_kfd.h) that plays the GPU's engines. It
// runs the packets of one queue's ring between its read pointer and a write pointer,
// against host memory, checking every address against the GPU mappings the mock knows:
//   PM4 (compute queue): NOP, SET_SH_REG (kept in a register file), ACQUIRE_MEM and
//     EVENT_WRITE (ordering only: the mock runs in order), RELEASE_MEM (writes the value
//     or a timestamp, then raises the interrupt INT_SEL asks for: MockKfd::interrupt), WAIT_REG_MEM (stalls the queue until satisfied), DISPATCH_DIRECT
//     (hands the registers to the dispatch handler), INDIRECT_BUFFER (runs the buffer).
//   SDMA (copy queue): NOP, COPY_LINEAR, WRITE_LINEAR, FENCE, TRAP (an interrupt with its
//     context id), POLL_REGMEM (stalls),
//     TIMESTAMP.
// Packets come from the shared decoders (device/amd/pm4.h, sdma.h). A packet must not
// straddle the end of the ring: the queues pad with NOPs instead (the mock is stricter
// than the CP here). Anything it cannot run throws MockQueueFault.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <stdexcept>
#include <string>

#include "device/amd/mock/mock_kfd.h"

namespace petaring::amd {

// A rejected packet: the queue stops, the fault is reported through WAIT_EVENTS.
struct MockQueueFault {
  uint64_t address = 0;  // a bad address, 0 when the packet itself was wrong
  ErrorKind kind = ErrorKind::kFailedPrecondition;
  std::string message;
};

// What a DISPATCH_DIRECT hands to the dispatch handler: the SH registers that describe
// the kernel, and the grid.
struct MockDispatch {
  uint64_t program_address = 0;          // COMPUTE_PGM_LO/HI << 8
  uint32_t rsrc1 = 0, rsrc2 = 0, rsrc3 = 0;
  std::array<uint32_t, 16> user_data{};  // COMPUTE_USER_DATA_0..15 (user SGPRs)
  std::array<uint32_t, 3> workgroup_size{};  // COMPUTE_NUM_THREAD_X/Y/Z
  std::array<uint32_t, 3> grid{};        // workgroups in x, y, z
  uint32_t tmpring_size = 0;             // COMPUTE_TMPRING_SIZE
  uint64_t scratch_base = 0;             // COMPUTE_DISPATCH_SCRATCH_BASE_LO/HI << 8
};

// Runs a dispatch on the CPU; throws MockQueueFault (or an Error, kept as the fault's
// kind and message) when it cannot.
using MockDispatchHandler = std::function<void(MockKfd& kfd, const MockDispatch& dispatch)>;

struct MockRing {
  uint32_t queue_id = 0;
  bool sdma = false;
  uint32_t* ring = nullptr;  // ring_bytes / 4 dwords
  uint64_t ring_bytes = 0;
  volatile uint64_t* read_pointer = nullptr;   // bytes, monotonic (wraps modulo ring size)
  volatile uint64_t* write_pointer = nullptr;  // bytes
  uint64_t doorbell_value = 0;                 // last value written to the doorbell
  std::map<uint32_t, uint32_t> registers;      // SH registers set so far
  bool faulted = false;
};

class MockExecutor {
 public:
  MockExecutor(MockKfd& kfd, MockDispatchHandler dispatch)
      : kfd_(kfd), dispatch_(std::move(dispatch)) {}

  // Executes packets from *read_pointer up to ring.doorbell_value, advancing the read
  // pointer after each; stops early at an unsatisfied wait. Returns the number of
  // packets run. Throws MockQueueFault.
  uint64_t run(MockRing& ring);

  // Pointer to `bytes` of GPU-mapped memory at `address`, or a MockQueueFault naming
  // `what` (e.g. "RELEASE_MEM destination").
  void* memory(uint64_t address, uint64_t bytes, const char* what);

 private:
  // Each returns false when the packet must wait (queue stalls on it).
  bool run_pm4(MockRing& ring, std::span<const uint32_t> stream, size_t offset, size_t* dwords,
               bool in_indirect);
  bool run_sdma(MockRing& ring, std::span<const uint32_t> stream, size_t offset, size_t* dwords);

  MockKfd& kfd_;
  MockDispatchHandler dispatch_;
};

// The GPU clock the mock writes for timestamps: nanoseconds of the steady clock.
uint64_t mock_gpu_clock();

}  // namespace petaring::amd
