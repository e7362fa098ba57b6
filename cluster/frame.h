// Frames: how one pool message (a Cap'n Proto Envelope, pool.capnp) travels on a TCP
// stream.
//
//   frame  = header (12 bytes) + payload
//   header = magic "PRPL" (4 bytes) | protocol version (u16 LE) | reserved 0 (u16)
//            | payload length in bytes (u32 LE)
//   payload = the Envelope as a Cap'n Proto flat array (single or multi segment),
//             a whole number of 8-byte words, at most kMaxPayloadBytes.
//
// Decoding never trusts the peer: a wrong magic, an unknown version, a length that is not
// a multiple of 8 or above the limit, or a payload Cap'n Proto cannot read (bad segment
// table, pointers out of bounds, nesting or traversal past the limits) is an Error of
// kind kInvalidArgument saying what was wrong. The caller closes that connection.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cluster/pool.capnp.h"

namespace petaring::cluster {

inline constexpr uint32_t kFrameMagic = 0x4c505250;  // "PRPL" little-endian
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 12;
inline constexpr uint32_t kMaxPayloadBytes = 4u << 20;  // 4 MiB: recipes and job lists

// Serializes `message` into one frame (header + payload).
std::string encode_frame(capnp::MessageBuilder& message);

// Checks a 12-byte header and returns the payload length it announces. Throws
// kInvalidArgument (bad magic, version, alignment or size), naming the value.
uint32_t decode_frame_header(const uint8_t* header, uint32_t max_payload = kMaxPayloadBytes);

// A decoded payload: owns the words and the reader over them.
class Frame {
 public:
  // Copies `size` bytes (a multiple of 8) and reads them as an Envelope. Throws
  // kInvalidArgument when Cap'n Proto cannot read them.
  Frame(const uint8_t* payload, size_t size);
  wire::Envelope::Reader envelope() const { return envelope_; }
  // The Envelope's union tag, or a name for a tag this build does not know.
  std::string kind() const;

 private:
  kj::Array<capnp::word> words_;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
  wire::Envelope::Reader envelope_;
};

// Decodes a whole frame held in memory (header + payload, nothing after). Used by the
// fuzz test and by anything that has the bytes already.
std::unique_ptr<Frame> decode_frame(const uint8_t* data, size_t size);

// The name of an Envelope union tag ("heartbeat", "submit", ...).
std::string envelope_kind_name(wire::Envelope::Which which);

}  // namespace petaring::cluster
