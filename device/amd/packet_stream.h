// What the PM4 and SDMA encoders and decoders share: 64-bit fields split into dwords,
// hex formatting, the decoder's cursor over one packet of a dword stream (its errors
// name the stream, the dword and byte offset and the header, then the engine's own
// description of the packet) and the loop that decodes a whole stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace petaring::amd::packet {

std::string hex(uint64_t value);  // "0x1f"

inline uint32_t lo(uint64_t v) { return static_cast<uint32_t>(v); }
inline uint32_t hi(uint64_t v) { return static_cast<uint32_t>(v >> 32); }
inline uint64_t join(uint32_t low, uint32_t high) { return uint64_t(high) << 32 | low; }

// Encoders: kInvalidArgument "<engine> <packet>: <field> 0x.. must be N-byte aligned".
void check_aligned(std::string_view engine, std::string_view packet, std::string_view field,
                   uint64_t address, uint64_t align);

// The packet whose header is stream[offset]. `describe` is the engine's part of an error
// ("opcode 0x49 (RELEASE_MEM)", "op 5 (FENCE) sub-op 0").
struct Cursor {
  std::span<const uint32_t> stream;
  size_t offset = 0;
  std::string_view name;  // the stream's, for errors
  uint32_t header = 0;

  // kInvalidArgument "<name>: packet at dword D (byte B), header H, <describe>: <why>".
  [[noreturn]] void fail(std::string_view describe, const std::string& why) const;
  // Fails "truncated: needs N dwords, only M left in the stream" when the packet (header
  // included) runs past the end.
  void expect_in_stream(size_t dwords, std::string_view describe) const;
  // Fails "<field> 0x.. is not N-byte aligned".
  void expect_aligned(std::string_view field, uint64_t address, uint64_t align,
                      std::string_view describe) const;
};

// Decodes packets one after another: `decode(stream, offset)` returns one with its size
// in dwords (`.dwords`, at least 1).
template <typename Decoded, typename DecodeOne>
std::vector<Decoded> decode_all(std::span<const uint32_t> stream, DecodeOne decode) {
  std::vector<Decoded> packets;
  for (size_t offset = 0; offset < stream.size();) {
    packets.push_back(decode(stream, offset));
    offset += packets.back().dwords;
  }
  return packets;
}

}  // namespace petaring::amd::packet
