// SDMA v6 encoder and decoder; the decoder checks what the encoder guarantees.
#include "device/amd/sdma.h"

#include <algorithm>
#include <string>
#include <type_traits>

#include "device/amd/packet_stream.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring::amd::sdma {
namespace {

using packet::hex;
using packet::hi;
using packet::join;
using packet::lo;

constexpr uint32_t kNopMaxCount = 0x3fff;         // header bits 16..29
constexpr uint32_t kWriteMaxDwords = 1u << 20;    // count field: 20 bits, minus one

constexpr uint32_t head(Op op, uint32_t sub_op = 0) { return uint32_t(op) | sub_op << 8; }

void check_aligned(const char* packet, uint64_t address, uint64_t align) {
  packet::check_aligned("SDMA", packet, "address", address, align);
}

void encode_one(const Nop& p, std::vector<uint32_t>* out) {
  if (p.dwords == 0 || p.dwords - 1 > kNopMaxCount) {
    PR_FAIL(kInvalidArgument, "SDMA NOP of ", p.dwords, " dwords: must be 1..", kNopMaxCount + 1);
  }
  out->push_back(head(Op::kNop) | (p.dwords - 1) << 16);
  out->insert(out->end(), p.dwords - 1, 0u);
}

void encode_one(const CopyLinear& p, std::vector<uint32_t>* out) {
  if (p.bytes == 0 || p.bytes > kMaxCopyBytes) {
    PR_FAIL(kInvalidArgument, "SDMA COPY_LINEAR of ", p.bytes, " bytes: must be 1..",
            kMaxCopyBytes, " (Writer::copy splits longer copies)");
  }
  out->insert(out->end(), {head(Op::kCopy, kSubOpCopyLinear), p.bytes - 1, 0u, lo(p.src),
                           hi(p.src), lo(p.dst), hi(p.dst)});
}

void encode_one(const WriteLinear& p, std::vector<uint32_t>* out) {
  check_aligned("WRITE_LINEAR", p.address, 4);
  if (p.data.empty() || p.data.size() > kWriteMaxDwords) {
    PR_FAIL(kInvalidArgument, "SDMA WRITE_LINEAR of ", p.data.size(), " dwords: must be 1..",
            kWriteMaxDwords);
  }
  out->insert(out->end(), {head(Op::kWrite, kSubOpWriteLinear), lo(p.address), hi(p.address),
                           static_cast<uint32_t>(p.data.size() - 1)});
  out->insert(out->end(), p.data.begin(), p.data.end());
}

void encode_one(const Fence& p, std::vector<uint32_t>* out) {
  check_aligned("FENCE", p.address, 4);
  out->insert(out->end(),
              {head(Op::kFence) | (p.mtype & 7) << 16, lo(p.address), hi(p.address), p.value});
}

void encode_one(const Trap& p, std::vector<uint32_t>* out) {
  out->insert(out->end(), {head(Op::kTrap), p.context & 0x0fffffff});
}

void encode_one(const PollRegmem& p, std::vector<uint32_t>* out) {
  if (p.memory) check_aligned("POLL_REGMEM", p.address, 4);
  out->insert(out->end(),
              {head(Op::kPollRegmem) | (p.hdp_flush ? 1u << 26 : 0) |
                   (uint32_t(p.function) & 7) << 28 | (p.memory ? 1u << 31 : 0),
               lo(p.address), hi(p.address), p.reference, p.mask,
               (p.interval & 0xffff) | (p.retry_count & 0xfff) << 16});
}

void encode_one(const Timestamp& p, std::vector<uint32_t>* out) {
  check_aligned("TIMESTAMP", p.address, 8);
  out->insert(out->end(),
              {head(Op::kTimestamp, kSubOpTimestampGetGlobal), lo(p.address), hi(p.address)});
}

struct Cursor : packet::Cursor {
  uint32_t op() const { return header & 0xff; }
  uint32_t sub_op() const { return header >> 8 & 0xff; }
  std::string describe() const {
    return str_cat("op ", op(), " (", op_name(op()), ") sub-op ", sub_op());
  }
  [[noreturn]] void reject(const std::string& why) const { fail(describe(), why); }
  // Rejects a packet of `dwords` that runs past the end of the stream.
  void expect_size(size_t dwords) const { expect_in_stream(dwords, describe()); }
  void expect_sub_op(uint32_t expected, const char* what) const {
    if (sub_op() != expected) reject(str_cat("only sub-op ", expected, " (", what, ") is modelled"));
  }
  void expect_aligned(uint64_t address, uint64_t align) const {
    packet::Cursor::expect_aligned("address", address, align, describe());
  }
  uint32_t at(size_t i) const { return stream[offset + i]; }
};

Decoded decode_known(const Cursor& c) {
  switch (Op(c.op())) {
    case Op::kNop: {
      const uint32_t dwords = (c.header >> 16 & kNopMaxCount) + 1;
      c.expect_size(dwords);
      return {Nop{dwords}, c.offset, dwords};
    }
    case Op::kCopy: {
      c.expect_sub_op(kSubOpCopyLinear, "COPY_LINEAR");
      c.expect_size(7);
      const uint64_t bytes = uint64_t(c.at(1) & 0x3fffffff) + 1;
      if (bytes > kMaxCopyBytes) {
        c.reject(str_cat("copies ", bytes, " bytes, more than the ", kMaxCopyBytes,
                         "-byte chunks the engine is given"));
      }
      return {CopyLinear{join(c.at(3), c.at(4)), join(c.at(5), c.at(6)), uint32_t(bytes)},
              c.offset, 7};
    }
    case Op::kWrite: {
      c.expect_sub_op(kSubOpWriteLinear, "WRITE_LINEAR");
      c.expect_size(4);
      const size_t n = size_t(c.at(3) & (kWriteMaxDwords - 1)) + 1;
      c.expect_size(4 + n);
      WriteLinear p{join(c.at(1), c.at(2)), {}};
      c.expect_aligned(p.address, 4);
      p.data.assign(c.stream.begin() + c.offset + 4, c.stream.begin() + c.offset + 4 + n);
      return {std::move(p), c.offset, 4 + n};
    }
    case Op::kFence: {
      c.expect_size(4);
      Fence p{join(c.at(1), c.at(2)), c.at(3), c.header >> 16 & 7};
      c.expect_aligned(p.address, 4);
      return {p, c.offset, 4};
    }
    case Op::kTrap:
      c.expect_size(2);
      return {Trap{c.at(1) & 0x0fffffff}, c.offset, 2};
    case Op::kPollRegmem: {
      c.expect_size(6);
      PollRegmem p;
      const uint32_t function = c.header >> 28 & 7;
      if (function == 7) c.reject("compare function 7 is reserved");
      p.function = CompareFunction(function);
      p.memory = (c.header >> 31) != 0;
      p.hdp_flush = (c.header >> 26 & 1) != 0;
      p.address = join(c.at(1), c.at(2));
      p.reference = c.at(3);
      p.mask = c.at(4);
      p.interval = c.at(5) & 0xffff;
      p.retry_count = c.at(5) >> 16 & 0xfff;
      if (p.memory) c.expect_aligned(p.address, 4);
      return {p, c.offset, 6};
    }
    case Op::kTimestamp: {
      c.expect_sub_op(kSubOpTimestampGetGlobal, "GET_GLOBAL_TIMESTAMP");
      c.expect_size(3);
      Timestamp p{join(c.at(1), c.at(2))};
      c.expect_aligned(p.address, 8);
      return {p, c.offset, 3};
    }
  }
  c.reject("unknown or unsupported op");
}

}  // namespace

std::string_view op_name(uint32_t op) {
  switch (op) {
    case 0: return "NOP";
    case 1: return "COPY";
    case 2: return "WRITE";
    case 4: return "INDIRECT";
    case 5: return "FENCE";
    case 6: return "TRAP";
    case 8: return "POLL_REGMEM";
    case 13: return "TIMESTAMP";
    default: return "unknown";
  }
}

std::string_view packet_name(const Packet& packet) {
  return std::visit(
      [](const auto& p) -> std::string_view {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, Nop>) return "NOP";
        if constexpr (std::is_same_v<T, CopyLinear>) return "COPY_LINEAR";
        if constexpr (std::is_same_v<T, WriteLinear>) return "WRITE_LINEAR";
        if constexpr (std::is_same_v<T, Fence>) return "FENCE";
        if constexpr (std::is_same_v<T, Trap>) return "TRAP";
        if constexpr (std::is_same_v<T, PollRegmem>) return "POLL_REGMEM";
        if constexpr (std::is_same_v<T, Timestamp>) return "TIMESTAMP";
      },
      packet);
}

void encode(const Packet& packet, std::vector<uint32_t>* out) {
  std::visit([out](const auto& p) { encode_one(p, out); }, packet);
}

Writer& Writer::copy(uint64_t dst, uint64_t src, uint64_t bytes) {
  for (uint64_t done = 0; done < bytes;) {
    const uint64_t chunk = std::min(bytes - done, kMaxCopyBytes);
    add(CopyLinear{src + done, dst + done, static_cast<uint32_t>(chunk)});
    done += chunk;
  }
  return *this;
}

Writer& Writer::poll_regmem(uint64_t address, uint32_t reference, CompareFunction function,
                            uint32_t mask) {
  PollRegmem p;
  p.address = address;
  p.reference = reference;
  p.function = function;
  p.mask = mask;
  return add(p);
}

Writer& Writer::pad_to(size_t multiple) {
  PR_CHECK(multiple > 0);
  const size_t gap = (multiple - dwords_.size() % multiple) % multiple;
  if (gap != 0) add(Nop{static_cast<uint32_t>(gap)});
  return *this;
}

Decoded decode_packet(std::span<const uint32_t> stream, size_t offset,
                      std::string_view stream_name) {
  PR_CHECK(offset < stream.size()) << "decode at dword " << offset << " of " << stream.size();
  const Cursor c{{stream, offset, stream_name, stream[offset]}};
  if (op_name(c.op()) == "unknown" || c.op() == uint32_t(4)) {
    c.reject("unknown or unsupported op");
  }
  return decode_known(c);
}

std::vector<Decoded> decode_stream(std::span<const uint32_t> stream,
                                   std::string_view stream_name) {
  return packet::decode_all<Decoded>(stream, [&](std::span<const uint32_t> all, size_t offset) {
    return decode_packet(all, offset, stream_name);
  });
}

}  // namespace petaring::amd::sdma
