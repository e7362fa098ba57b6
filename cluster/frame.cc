#include "cluster/frame.h"

#include <kj/exception.h>

#include <cstring>

#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring::cluster {
namespace {

void put_u16(uint8_t* p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = (v >> (8 * i)) & 0xff;
}
uint16_t get_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t get_u32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

}  // namespace

std::string encode_frame(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  PR_CHECK_LE(bytes.size(), size_t{kMaxPayloadBytes});
  std::string frame(kFrameHeaderBytes + bytes.size(), '\0');
  auto* header = reinterpret_cast<uint8_t*>(frame.data());
  put_u32(header, kFrameMagic);
  put_u16(header + 4, kProtocolVersion);
  put_u16(header + 6, 0);
  put_u32(header + 8, static_cast<uint32_t>(bytes.size()));
  std::memcpy(frame.data() + kFrameHeaderBytes, bytes.begin(), bytes.size());
  return frame;
}

uint32_t decode_frame_header(const uint8_t* header, uint32_t max_payload) {
  uint32_t magic = get_u32(header);
  if (magic != kFrameMagic) {
    PR_FAIL(kInvalidArgument, "not a petaring pool frame (magic 0x", std::hex, magic,
            ", expected 0x", kFrameMagic, "); is the peer a petaring coordinator or worker?");
  }
  uint16_t version = get_u16(header + 4);
  if (version != kProtocolVersion) {
    PR_FAIL(kInvalidArgument, "pool protocol version ", version, " is not supported (this build speaks ",
            kProtocolVersion, "); run the same petaring version on every node");
  }
  if (get_u16(header + 6) != 0) PR_FAIL(kInvalidArgument, "frame header: reserved field is not 0");
  uint32_t length = get_u32(header + 8);
  if (length > max_payload) {
    PR_FAIL(kInvalidArgument, "frame of ", length, " bytes exceeds the limit of ", max_payload, " bytes");
  }
  if (length == 0 || length % sizeof(capnp::word) != 0) {
    PR_FAIL(kInvalidArgument, "frame length ", length, " is not a positive multiple of 8 bytes");
  }
  return length;
}

Frame::Frame(const uint8_t* payload, size_t size) {
  PR_CHECK_EQ(size % sizeof(capnp::word), size_t{0});
  words_ = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  std::memcpy(words_.begin(), payload, size);
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 4 * words_.size() + 64;  // no amplification past 4x
  options.nestingLimit = 16;
  try {
    reader_ = std::make_unique<capnp::FlatArrayMessageReader>(words_.asPtr(), options);
    envelope_ = reader_->getRoot<wire::Envelope>();
    // Walk the whole message now, so that a bad pointer deep inside fails here and not
    // in the middle of a handler.
    envelope_.totalSize();
    envelope_.which();
  } catch (const kj::Exception& e) {
    PR_FAIL(kInvalidArgument, "malformed pool message: ", e.getDescription().cStr());
  }
}

std::string Frame::kind() const { return envelope_kind_name(envelope_.which()); }

std::unique_ptr<Frame> decode_frame(const uint8_t* data, size_t size) {
  if (size < kFrameHeaderBytes) {
    PR_FAIL(kInvalidArgument, "truncated frame: ", size, " bytes, a header alone is ", kFrameHeaderBytes);
  }
  uint32_t length = decode_frame_header(data);
  if (size - kFrameHeaderBytes != length) {
    PR_FAIL(kInvalidArgument, "frame announces ", length, " payload bytes but holds ", size - kFrameHeaderBytes);
  }
  return std::make_unique<Frame>(data + kFrameHeaderBytes, length);
}

std::string envelope_kind_name(wire::Envelope::Which which) {
  using W = wire::Envelope::Which;
  switch (which) {
    case W::CHALLENGE: return "challenge";
    case W::HELLO: return "hello";
    case W::WELCOME: return "welcome";
    case W::FAILURE: return "failure";
    case W::REGISTER_NODE: return "registerNode";
    case W::REGISTERED: return "registered";
    case W::HEARTBEAT: return "heartbeat";
    case W::HEARTBEAT_REPLY: return "heartbeatReply";
    case W::SUBMIT: return "submit";
    case W::SUBMITTED: return "submitted";
    case W::LIST_JOBS: return "listJobs";
    case W::JOBS: return "jobs";
    case W::GET_JOB: return "getJob";
    case W::JOB: return "job";
    case W::CANCEL: return "cancel";
    case W::OK: return "ok";
    case W::LIST_NODES: return "listNodes";
    case W::NODES: return "nodes";
    case W::GET_LEDGER: return "getLedger";
    case W::LEDGER: return "ledger";
    case W::RECLAIM: return "reclaim";
    case W::JOIN_JOB: return "joinJob";
    case W::JOINED: return "joined";
    case W::STORE_OP: return "storeOp";
    case W::STORE_REPLY: return "storeReply";
  }
  return str_cat("unknown(", static_cast<int>(which), ")");
}

}  // namespace petaring::cluster
