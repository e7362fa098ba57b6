// The 64-byte AQL kernel dispatch packet of the HSA specification (hsa.h's
// hsa_kernel_dispatch_packet_t), as an AQL compute queue (KFD queue type COMPUTE_AQL)
// reads it, and the 16-byte signal our queues complete.
//
// A producer fills bytes 4..63 of a ring slot, then publishes the slot by storing
// header | setup << 16 as one 32-bit release store (publish()); the consumer owns the
// slot once the type in the header is no longer INVALID. The doorbell value is the
// packet index. TODO(hw): confirm on a gfx1100 board (nothing here has run on one).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "runtime/error.h"

namespace petaring::amd::aql {

enum class PacketType : uint8_t {
  kVendorSpecific = 0,
  kInvalid = 1,  // an empty slot
  kKernelDispatch = 2,
  kBarrierAnd = 3,
  kAgentDispatch = 4,
  kBarrierOr = 5,
};

enum class FenceScope : uint8_t { kNone = 0, kAgent = 1, kSystem = 2 };

// Header bit positions.
constexpr int kHeaderTypeShift = 0;            // 8 bits
constexpr int kHeaderBarrierShift = 8;         // 1 bit: wait for earlier packets
constexpr int kHeaderAcquireScopeShift = 9;    // 2 bits
constexpr int kHeaderReleaseScopeShift = 11;   // 2 bits
constexpr int kSetupDimensionsShift = 0;       // 2 bits: 1..3

constexpr uint16_t make_header(PacketType type, bool barrier, FenceScope acquire,
                               FenceScope release) {
  return static_cast<uint16_t>(uint16_t(type) << kHeaderTypeShift |
                               uint16_t(barrier ? 1 : 0) << kHeaderBarrierShift |
                               uint16_t(acquire) << kHeaderAcquireScopeShift |
                               uint16_t(release) << kHeaderReleaseScopeShift);
}

struct KernelDispatchPacket {
  uint16_t header = make_header(PacketType::kInvalid, false, FenceScope::kNone,
                                FenceScope::kNone);
  uint16_t setup = 0;               // dimensions (1..3) in bits 0..1
  uint16_t workgroup_size_x = 1;    // work-items
  uint16_t workgroup_size_y = 1;
  uint16_t workgroup_size_z = 1;
  uint16_t reserved0 = 0;
  uint32_t grid_size_x = 1;         // work-items (not workgroups)
  uint32_t grid_size_y = 1;
  uint32_t grid_size_z = 1;
  uint32_t private_segment_size = 0;  // bytes per work-item
  uint32_t group_segment_size = 0;    // bytes per workgroup (LDS)
  uint64_t kernel_object = 0;       // address of the 64-byte kernel descriptor
  uint64_t kernarg_address = 0;     // 16-byte aligned
  uint64_t reserved2 = 0;
  uint64_t completion_signal = 0;   // address of a Signal, or 0
};
static_assert(sizeof(KernelDispatchPacket) == 64);
static_assert(offsetof(KernelDispatchPacket, setup) == 2);
static_assert(offsetof(KernelDispatchPacket, workgroup_size_x) == 4);
static_assert(offsetof(KernelDispatchPacket, grid_size_x) == 12);
static_assert(offsetof(KernelDispatchPacket, private_segment_size) == 24);
static_assert(offsetof(KernelDispatchPacket, group_segment_size) == 28);
static_assert(offsetof(KernelDispatchPacket, kernel_object) == 32);
static_assert(offsetof(KernelDispatchPacket, kernarg_address) == 40);
static_assert(offsetof(KernelDispatchPacket, completion_signal) == 56);

// A 16-byte signal in uncached GTT memory: the engine writes `value` (RELEASE_MEM or an
// SDMA FENCE) and, where asked, `timestamp`; the host polls `value`.
struct Signal {
  uint64_t value = 0;
  uint64_t timestamp = 0;
};
static_assert(sizeof(Signal) == 16);

// Returns a dispatch packet (header already set to KERNEL_DISPATCH with a barrier and
// system-scope fences) for a grid of `grid` work-items in workgroups of `workgroup`.
inline KernelDispatchPacket make_kernel_dispatch(const uint32_t grid[3],
                                                 const uint16_t workgroup[3], int dimensions,
                                                 uint64_t kernel_object,
                                                 uint64_t kernarg_address,
                                                 uint64_t completion_signal) {
  KernelDispatchPacket p;
  p.header = make_header(PacketType::kKernelDispatch, true, FenceScope::kSystem,
                         FenceScope::kSystem);
  p.setup = static_cast<uint16_t>(dimensions << kSetupDimensionsShift);
  p.workgroup_size_x = workgroup[0];
  p.workgroup_size_y = workgroup[1];
  p.workgroup_size_z = workgroup[2];
  p.grid_size_x = grid[0];
  p.grid_size_y = grid[1];
  p.grid_size_z = grid[2];
  p.kernel_object = kernel_object;
  p.kernarg_address = kernarg_address;
  p.completion_signal = completion_signal;
  return p;
}

// Writes `packet` into the ring slot `slot`: bytes 4..63 first, then header and setup
// in one 32-bit release store so the consumer never sees a half-written packet.
inline void publish(void* slot, const KernelDispatchPacket& packet) {
  auto* bytes = static_cast<unsigned char*>(slot);
  std::memcpy(bytes + 4, reinterpret_cast<const unsigned char*>(&packet) + 4, 60);
  const uint32_t first = uint32_t(packet.header) | uint32_t(packet.setup) << 16;
  std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(slot))
      .store(first, std::memory_order_release);
}

inline PacketType packet_type(uint16_t header) {
  return PacketType(header >> kHeaderTypeShift & 0xff);
}

// Reads the packet in `slot` (acquire on the header) and checks it as the packet
// processor would. Throws kInvalidArgument naming `where` (e.g. "amd:0 AQL queue slot 7")
// when the type is not KERNEL_DISPATCH, the dimensions are not 1..3, a size is 0, an
// unused dimension is not 1, the kernel object is null or not 64-byte aligned, or the
// kernarg address is not 16-byte aligned.
inline KernelDispatchPacket read_kernel_dispatch(const void* slot, std::string_view where) {
  KernelDispatchPacket p;
  const uint32_t first = std::atomic_ref<uint32_t>(
                             *const_cast<uint32_t*>(static_cast<const uint32_t*>(slot)))
                             .load(std::memory_order_acquire);
  std::memcpy(&p, slot, sizeof p);
  p.header = static_cast<uint16_t>(first);
  p.setup = static_cast<uint16_t>(first >> 16);
  const int type = p.header & 0xff;
  if (PacketType(type) != PacketType::kKernelDispatch) {
    PR_FAIL(kInvalidArgument, where, ": AQL packet type ", type,
            " is not KERNEL_DISPATCH (2); only kernel dispatches are modelled");
  }
  const int dims = p.setup & 3;
  const uint32_t wg[3] = {p.workgroup_size_x, p.workgroup_size_y, p.workgroup_size_z};
  const uint32_t grid[3] = {p.grid_size_x, p.grid_size_y, p.grid_size_z};
  if (dims < 1) PR_FAIL(kInvalidArgument, where, ": AQL dispatch with 0 dimensions (setup)");
  for (int d = 0; d < 3; ++d) {
    const bool used = d < dims;
    if (wg[d] == 0 || grid[d] == 0 || (!used && (wg[d] != 1 || grid[d] != 1))) {
      PR_FAIL(kInvalidArgument, where, ": AQL dispatch of ", dims, " dimension(s) has grid ",
              grid[0], "x", grid[1], "x", grid[2], " and workgroup ", wg[0], "x", wg[1], "x",
              wg[2], ": sizes must be >= 1 and unused dimensions 1");
    }
  }
  if (p.kernel_object == 0 || p.kernel_object % 64 != 0) {
    PR_FAIL(kInvalidArgument, where, ": AQL kernel_object ", p.kernel_object,
            " is not the address of a 64-byte aligned kernel descriptor");
  }
  if (p.kernarg_address % 16 != 0) {
    PR_FAIL(kInvalidArgument, where, ": AQL kernarg_address ", p.kernarg_address,
            " is not 16-byte aligned");
  }
  return p;
}

}  // namespace petaring::amd::aql
