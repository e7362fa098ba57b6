// PM4 type-3 packets for the compute engine (MEC) of RDNA3 (gfx11): typed packets, an
// encoder that appends them to a dword buffer, and a decoder that turns a dword stream
// back into typed packets (the mock KFD executes what the decoder returns).
//
// A type-3 header is  3 << 30 | (body_dwords - 1) << 16 | opcode << 8.
// Register offsets are dword offsets in the GC register space (SET_SH_REG writes
// `reg - 0x2c00`). Layouts follow the public amdgpu/Mesa headers (nvd.h, sid.h); none
// of this has run on real hardware yet: TODO(hw): confirm on a gfx1100 board.
//
// No I/O here: encoders and decoders only touch the buffers they are given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace petaring::amd {

// Comparison of WAIT_REG_MEM (PM4) and POLL_REGMEM (SDMA): the wait ends when
// `(value & mask) <op> reference`. Same encoding on both engines.
enum class CompareFunction : uint32_t {
  kAlways = 0,
  kLess = 1,
  kLessEqual = 2,
  kEqual = 3,
  kNotEqual = 4,
  kGreaterEqual = 5,
  kGreater = 6,
};
bool compare_satisfied(CompareFunction function, uint32_t value, uint32_t mask,
                       uint32_t reference);
std::string_view compare_name(CompareFunction function);  // ">=", "==", ...

}  // namespace petaring::amd

namespace petaring::amd::pm4 {

enum class Opcode : uint8_t {
  kNop = 0x10,
  kDispatchDirect = 0x15,
  kWaitRegMem = 0x3c,
  kIndirectBuffer = 0x3f,
  kEventWrite = 0x46,
  kReleaseMem = 0x49,
  kAcquireMem = 0x58,
  kSetShReg = 0x76,
};
std::string_view opcode_name(uint32_t opcode);  // "SET_SH_REG"; "unknown" otherwise

constexpr uint32_t header(Opcode opcode, uint32_t body_dwords) {
  return 3u << 30 | ((body_dwords - 1) & 0x3fff) << 16 | uint32_t(opcode) << 8;
}

// SH registers of the compute pipe (dword offsets). SET_SH_REG covers [kShRegStart, kShRegEnd).
namespace reg {
constexpr uint32_t kShRegStart = 0x2c00;
constexpr uint32_t kShRegEnd = 0x3000;
constexpr uint32_t kComputeDispatchInitiator = 0x2e00;
constexpr uint32_t kComputeDimX = 0x2e01;
constexpr uint32_t kComputeStartX = 0x2e04;  // Y, Z follow
constexpr uint32_t kComputeNumThreadX = 0x2e07;  // Y = 0x2e08, Z = 0x2e09: workgroup size
constexpr uint32_t kComputePgmLo = 0x2e0c;  // code entry address >> 8, low 32 bits
constexpr uint32_t kComputePgmHi = 0x2e0d;
constexpr uint32_t kComputeDispatchScratchBaseLo = 0x2e10;
constexpr uint32_t kComputeDispatchScratchBaseHi = 0x2e11;
constexpr uint32_t kComputePgmRsrc1 = 0x2e12;
constexpr uint32_t kComputePgmRsrc2 = 0x2e13;
constexpr uint32_t kComputeResourceLimits = 0x2e15;
constexpr uint32_t kComputeTmpringSize = 0x2e18;
constexpr uint32_t kComputePgmRsrc3 = 0x2e28;
constexpr uint32_t kComputeUserData0 = 0x2e40;  // 16 user SGPRs: 0x2e40..0x2e4f
constexpr int kComputeUserDataCount = 16;
}  // namespace reg

// VGT event types and indexes (EVENT_WRITE, RELEASE_MEM).
constexpr uint32_t kEventCsPartialFlush = 0x07;            // with kEventIndexPartialFlush
constexpr uint32_t kEventCacheFlushAndInvTs = 0x14;        // with kEventIndexEndOfPipe
constexpr uint32_t kEventIndexPartialFlush = 4;
constexpr uint32_t kEventIndexEndOfPipe = 5;

// GCR_CNTL of ACQUIRE_MEM (the last body dword): which caches to write back/invalidate.
namespace gcr {
constexpr uint32_t kGliInvalidateAll = 1u << 0;  // 2-bit field, 1 = ALL
constexpr uint32_t kGlmWriteback = 1u << 4;
constexpr uint32_t kGlmInvalidate = 1u << 5;
constexpr uint32_t kGlkWriteback = 1u << 6;
constexpr uint32_t kGlkInvalidate = 1u << 7;
constexpr uint32_t kGlvInvalidate = 1u << 8;
constexpr uint32_t kGl1Invalidate = 1u << 9;
constexpr uint32_t kGl2Invalidate = 1u << 14;
constexpr uint32_t kGl2Writeback = 1u << 15;
constexpr uint32_t kAll = kGliInvalidateAll | kGlmWriteback | kGlmInvalidate | kGlkWriteback |
                          kGlkInvalidate | kGlvInvalidate | kGl1Invalidate | kGl2Invalidate |
                          kGl2Writeback;
constexpr uint32_t kMask = 0x7ffff;  // 19 bits
}  // namespace gcr

// Cache actions carried in RELEASE_MEM's first body dword (bits 12..).
namespace release_gcr {
constexpr uint32_t kGlmWriteback = 1u << 12;
constexpr uint32_t kGlmInvalidate = 1u << 13;
constexpr uint32_t kGlvInvalidate = 1u << 14;
constexpr uint32_t kGl1Invalidate = 1u << 15;
constexpr uint32_t kGl2Invalidate = 1u << 20;
constexpr uint32_t kGl2Writeback = 1u << 21;
constexpr uint32_t kSeq = 1u << 22;
constexpr uint32_t kFlushAll = kGlmWriteback | kGlmInvalidate | kGlvInvalidate | kGl1Invalidate |
                               kGl2Invalidate | kGl2Writeback | kSeq;
}  // namespace release_gcr

// COMPUTE_DISPATCH_INITIATOR bits (DISPATCH_DIRECT's last dword).
constexpr uint32_t kDispatchComputeShaderEn = 1u << 0;
constexpr uint32_t kDispatchForceStartAt000 = 1u << 2;
constexpr uint32_t kDispatchCsW32En = 1u << 15;  // wave32

// ---- Typed packets. Every field is what the engine sees; `==` compares all of them.

// NOP: `dwords` in total (header included), >= 1. One dword is the header alone
// (count field 0x3fff).
struct Nop {
  uint32_t dwords = 1;
  bool operator==(const Nop&) const = default;
};

// SET_SH_REG: values[i] goes to register `reg + i` (absolute dword offset).
struct SetShReg {
  uint32_t reg = 0;
  std::vector<uint32_t> values;
  bool operator==(const SetShReg&) const = default;
};

// ACQUIRE_MEM (gfx10+ layout, 7 body dwords): wait for prior work, then write back /
// invalidate the caches in `gcr_cntl` over [coher_base, coher_base + coher_size).
// The defaults cover the whole address space, as amdgpu does.
struct AcquireMem {
  uint32_t coher_cntl = 0;
  uint64_t coher_size = 0x00ffffff'ffffffffull;  // as amdgpu writes it: "everything"
  uint64_t coher_base = 0;
  uint32_t poll_interval = 10;
  uint32_t gcr_cntl = gcr::kAll;
  bool operator==(const AcquireMem&) const = default;
};

enum class DataSel : uint32_t { kNone = 0, kValue32 = 1, kValue64 = 2, kTimestamp = 3 };
enum class IntSel : uint32_t {
  kNone = 0,
  kInterrupt = 1,
  kInterruptAfterWriteConfirm = 2,
  kDataAfterWriteConfirm = 3,
};

// RELEASE_MEM (7 body dwords): when `event_type` reaches the end of the pipe, perform
// the cache actions in `gcr` (release_gcr:: bits), write `data` (or the GPU clock) to
// `address`, and optionally raise an interrupt carrying `int_ctxid`.
struct ReleaseMem {
  uint32_t event_type = kEventCacheFlushAndInvTs;
  uint32_t event_index = kEventIndexEndOfPipe;
  uint32_t gcr = 0;  // bits 12..31 of the first body dword, in place
  DataSel data_sel = DataSel::kValue64;
  IntSel int_sel = IntSel::kNone;
  uint32_t dst_sel = 0;  // 0 = memory
  uint64_t address = 0;  // 8-byte aligned for 64-bit data, 4 for 32-bit
  uint64_t data = 0;
  uint32_t int_ctxid = 0;
  bool operator==(const ReleaseMem&) const = default;
};

enum class MemSpace : uint32_t { kRegister = 0, kMemory = 1 };

// WAIT_REG_MEM (6 body dwords): stall until (*address & mask) <function> reference.
// With kRegister, the low 32 bits of `address` are the register offset.
struct WaitRegMem {
  CompareFunction function = CompareFunction::kGreaterEqual;
  MemSpace mem_space = MemSpace::kMemory;
  uint32_t operation = 0;  // 0 = wait; others are register write/wait forms
  uint32_t engine = 0;     // 0 = ME
  uint64_t address = 0;    // 4-byte aligned in memory space
  uint32_t reference = 0;
  uint32_t mask = 0xffffffff;
  uint32_t poll_interval = 4;
  bool operator==(const WaitRegMem&) const = default;
};

// DISPATCH_DIRECT (4 body dwords): the grid in workgroups, and COMPUTE_DISPATCH_INITIATOR.
struct DispatchDirect {
  uint32_t dim_x = 1, dim_y = 1, dim_z = 1;
  uint32_t initiator = kDispatchComputeShaderEn | kDispatchForceStartAt000 | kDispatchCsW32En;
  bool operator==(const DispatchDirect&) const = default;
};

// EVENT_WRITE without an address (1 body dword).
struct EventWrite {
  uint32_t event_type = kEventCsPartialFlush;
  uint32_t event_index = kEventIndexPartialFlush;
  bool operator==(const EventWrite&) const = default;
};

// INDIRECT_BUFFER (3 body dwords): run `size_dwords` dwords of PM4 at `address`.
// Compute queues need the VALID bit (bit 23 of the control dword).
struct IndirectBuffer {
  uint64_t address = 0;  // 4-byte aligned, 48 bits
  uint32_t size_dwords = 0;  // 1 .. 0xfffff
  uint32_t vmid = 0;
  bool chain = false;
  bool valid = true;
  bool operator==(const IndirectBuffer&) const = default;
};

using Packet = std::variant<Nop, SetShReg, AcquireMem, ReleaseMem, WaitRegMem, DispatchDirect,
                            EventWrite, IndirectBuffer>;
std::string_view packet_name(const Packet& packet);  // "RELEASE_MEM"

// Appends the dwords of `packet` to `out`. Throws kInvalidArgument for packets that
// cannot be encoded (misaligned addresses, sizes out of range, empty SET_SH_REG).
void encode(const Packet& packet, std::vector<uint32_t>* out);

// Builds a PM4 command stream; the dwords are then copied into a ring or an indirect
// buffer by the queue. Not thread-safe.
class Writer {
 public:
  Writer& nop(uint32_t dwords = 1) { return add(Nop{dwords}); }
  Writer& set_sh_reg(uint32_t reg, std::vector<uint32_t> values) {
    return add(SetShReg{reg, std::move(values)});
  }
  Writer& acquire_mem(uint32_t gcr_cntl = gcr::kAll) {
    AcquireMem p;
    p.gcr_cntl = gcr_cntl;
    return add(p);
  }
  // End-of-pipe write of a 64-bit `value` to `address` (a signal), with caches flushed.
  Writer& release_mem(uint64_t address, uint64_t value, IntSel int_sel = IntSel::kNone,
                      uint32_t int_ctxid = 0);
  // Waits until (*address & mask) >= reference in memory.
  Writer& wait_reg_mem(uint64_t address, uint32_t reference,
                       CompareFunction function = CompareFunction::kGreaterEqual,
                       uint32_t mask = 0xffffffff);
  Writer& dispatch_direct(uint32_t x, uint32_t y, uint32_t z, bool wave32 = true);
  Writer& event_write(uint32_t event_type = kEventCsPartialFlush,
                      uint32_t event_index = kEventIndexPartialFlush) {
    return add(EventWrite{event_type, event_index});
  }
  Writer& indirect_buffer(uint64_t address, uint32_t size_dwords) {
    IndirectBuffer p;
    p.address = address;
    p.size_dwords = size_dwords;
    return add(p);
  }
  Writer& add(const Packet& packet) {
    encode(packet, &dwords_);
    return *this;
  }

  const std::vector<uint32_t>& dwords() const { return dwords_; }
  size_t size() const { return dwords_.size(); }
  void clear() { dwords_.clear(); }

 private:
  std::vector<uint32_t> dwords_;
};

// One decoded packet and where it sat in the stream.
struct Decoded {
  Packet packet;
  size_t offset = 0;  // in dwords from the start of the stream
  size_t dwords = 0;  // header included
};

// Decodes the packet that starts at `stream[offset]`. Throws kInvalidArgument naming
// `stream_name`, the dword offset, the header and the opcode when the packet is not
// type 3, its opcode is not one of the above, it runs past the end of the stream
// (truncated), its size is wrong for its opcode, or a field is invalid (misaligned
// address, register outside the SH range, IB without VALID, ...).
Decoded decode_packet(std::span<const uint32_t> stream, size_t offset,
                      std::string_view stream_name = "PM4 stream");
// Decodes a whole stream of back-to-back packets (same errors).
std::vector<Decoded> decode_stream(std::span<const uint32_t> stream,
                                   std::string_view stream_name = "PM4 stream");

}  // namespace petaring::amd::pm4
