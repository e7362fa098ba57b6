// SDMA v6 packets (the copy engine of RDNA3, gfx11): typed packets, an encoder that
// appends them to a dword buffer, and a decoder for the mock KFD's executor.
//
// A header dword is  op | sub_op << 8 | packet-specific bits << 16.
// Layouts follow the public amdgpu headers (sdma_v6_0 packet definitions); none of
// this has run on real hardware yet: TODO(hw): confirm on a gfx1100 board.
//
// No I/O here: encoders and decoders only touch the buffers they are given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "device/amd/pm4.h"  // CompareFunction

namespace petaring::amd::sdma {

enum class Op : uint8_t {
  kNop = 0,
  kCopy = 1,        // sub-op 0: linear
  kWrite = 2,       // sub-op 0: linear
  kFence = 5,
  kTrap = 6,
  kPollRegmem = 8,
  kTimestamp = 13,  // sub-op 2: get global timestamp
};
std::string_view op_name(uint32_t op);  // "COPY"; "unknown" otherwise

constexpr uint32_t kSubOpCopyLinear = 0;
constexpr uint32_t kSubOpWriteLinear = 0;
constexpr uint32_t kSubOpTimestampGetGlobal = 2;

// Largest COPY_LINEAR we emit (amdgpu's copy_max_bytes for SDMA v5.2/v6): longer copies
// are split into chunks of this size, and the decoder rejects longer packets.
// TODO(hw): the count field has 30 bits; whether larger copies work is unconfirmed.
constexpr uint64_t kMaxCopyBytes = 1ull << 22;
// amdgpu pads SDMA indirect buffers to a multiple of this many dwords.
constexpr size_t kPadDwords = 8;
// Memory type of FENCE writes: 3 = uncached (signals live in uncached GTT).
constexpr uint32_t kMtypeUncached = 3;

// ---- Typed packets. `==` compares every field.

// NOP: `dwords` in total (header included, >= 1); the header's count field holds
// dwords - 1 so a single packet can pad any gap.
struct Nop {
  uint32_t dwords = 1;
  bool operator==(const Nop&) const = default;
};

// COPY_LINEAR (7 dwords): `bytes` (1 .. kMaxCopyBytes) from `src` to `dst`.
struct CopyLinear {
  uint64_t src = 0;
  uint64_t dst = 0;
  uint32_t bytes = 0;
  bool operator==(const CopyLinear&) const = default;
};

// WRITE_LINEAR (3 + n dwords): writes `data` to `address` (4-byte aligned).
struct WriteLinear {
  uint64_t address = 0;
  std::vector<uint32_t> data;  // 1 .. 2^20 dwords
  bool operator==(const WriteLinear&) const = default;
};

// FENCE (4 dwords): writes the 32-bit `value` to `address` (4-byte aligned) once prior
// packets have completed.
struct Fence {
  uint64_t address = 0;
  uint32_t value = 0;
  uint32_t mtype = kMtypeUncached;
  bool operator==(const Fence&) const = default;
};

// TRAP (2 dwords): raises an interrupt carrying `context` (28 bits).
struct Trap {
  uint32_t context = 0;
  bool operator==(const Trap&) const = default;
};

// POLL_REGMEM (6 dwords): stalls until (*address & mask) <function> reference, polling
// every `interval` clocks up to `retry_count` times (0xfff = forever).
struct PollRegmem {
  uint64_t address = 0;  // 4-byte aligned (memory) or a register offset
  uint32_t reference = 0;
  uint32_t mask = 0xffffffff;
  CompareFunction function = CompareFunction::kGreaterEqual;
  bool memory = true;
  bool hdp_flush = false;
  uint32_t interval = 4;        // 16 bits
  uint32_t retry_count = 0xfff;  // 12 bits
  bool operator==(const PollRegmem&) const = default;
};

// TIMESTAMP GET_GLOBAL (3 dwords): writes the 64-bit GPU clock to `address` (8-byte aligned).
struct Timestamp {
  uint64_t address = 0;
  bool operator==(const Timestamp&) const = default;
};

using Packet = std::variant<Nop, CopyLinear, WriteLinear, Fence, Trap, PollRegmem, Timestamp>;
std::string_view packet_name(const Packet& packet);  // "COPY_LINEAR"

// Appends `packet` to `out`. Throws kInvalidArgument when it cannot be encoded
// (misaligned address, size 0 or over the limit, field out of range).
void encode(const Packet& packet, std::vector<uint32_t>* out);

// Builds an SDMA command stream. Not thread-safe.
class Writer {
 public:
  // Copies `bytes` from `src` to `dst`, split into COPY_LINEARs of at most
  // kMaxCopyBytes. Zero bytes emits nothing.
  Writer& copy(uint64_t dst, uint64_t src, uint64_t bytes);
  Writer& write(uint64_t address, std::vector<uint32_t> data) {
    return add(WriteLinear{address, std::move(data)});
  }
  Writer& fence(uint64_t address, uint32_t value) { return add(Fence{address, value}); }
  Writer& trap(uint32_t context = 0) { return add(Trap{context}); }
  Writer& poll_regmem(uint64_t address, uint32_t reference,
                      CompareFunction function = CompareFunction::kGreaterEqual,
                      uint32_t mask = 0xffffffff);
  Writer& timestamp(uint64_t address) { return add(Timestamp{address}); }
  Writer& nop(uint32_t dwords = 1) { return add(Nop{dwords}); }
  // Appends one NOP so that size() becomes a multiple of `multiple` dwords (no-op when
  // it already is).
  Writer& pad_to(size_t multiple = kPadDwords);
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

struct Decoded {
  Packet packet;
  size_t offset = 0;  // in dwords from the start of the stream
  size_t dwords = 0;  // header included
};

// Decodes the packet at `stream[offset]`. Throws kInvalidArgument naming `stream_name`,
// the dword offset, the header and the op when the op or sub-op is unknown, the packet
// runs past the end of the stream, its size field is 0 or over the limit, or an address
// is misaligned.
Decoded decode_packet(std::span<const uint32_t> stream, size_t offset,
                      std::string_view stream_name = "SDMA stream");
std::vector<Decoded> decode_stream(std::span<const uint32_t> stream,
                                   std::string_view stream_name = "SDMA stream");

}  // namespace petaring::amd::sdma
