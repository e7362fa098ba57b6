// PM4 encoder and decoder. Each packet type has one encode_* and one decode_* below;
// the decoder checks exactly what the encoder guarantees, so a stream our Writer built
// always decodes, and a corrupt one is rejected with its offset and opcode.
#include "device/amd/pm4.h"

#include <type_traits>

#include "device/amd/packet_stream.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring::amd {

bool compare_satisfied(CompareFunction function, uint32_t value, uint32_t mask,
                       uint32_t reference) {
  const uint32_t v = value & mask;
  switch (function) {
    case CompareFunction::kAlways: return true;
    case CompareFunction::kLess: return v < reference;
    case CompareFunction::kLessEqual: return v <= reference;
    case CompareFunction::kEqual: return v == reference;
    case CompareFunction::kNotEqual: return v != reference;
    case CompareFunction::kGreaterEqual: return v >= reference;
    case CompareFunction::kGreater: return v > reference;
  }
  return false;
}

std::string_view compare_name(CompareFunction function) {
  switch (function) {
    case CompareFunction::kAlways: return "always";
    case CompareFunction::kLess: return "<";
    case CompareFunction::kLessEqual: return "<=";
    case CompareFunction::kEqual: return "==";
    case CompareFunction::kNotEqual: return "!=";
    case CompareFunction::kGreaterEqual: return ">=";
    case CompareFunction::kGreater: return ">";
  }
  return "reserved";
}

}  // namespace petaring::amd

namespace petaring::amd::pm4 {
namespace {

using packet::hex;
using packet::hi;
using packet::join;
using packet::lo;

constexpr uint32_t kMaxBody = 0x3fff;  // count field (14 bits) + 1, minus the 0x3fff NOP form
constexpr uint32_t kIbValid = 1u << 23;
constexpr uint32_t kIbChain = 1u << 20;

void emit(std::vector<uint32_t>* out, Opcode op, std::initializer_list<uint32_t> body) {
  out->push_back(header(op, static_cast<uint32_t>(body.size())));
  out->insert(out->end(), body);
}

void check_address(const char* packet, const char* field, uint64_t address, uint64_t align) {
  packet::check_aligned("PM4", packet, field, address, align);
}

void encode_one(const Nop& p, std::vector<uint32_t>* out) {
  if (p.dwords == 0 || p.dwords > kMaxBody + 1) {
    PR_FAIL(kInvalidArgument, "PM4 NOP of ", p.dwords, " dwords: must be 1..", kMaxBody + 1);
  }
  if (p.dwords == 1) {
    out->push_back(3u << 30 | 0x3fffu << 16 | uint32_t(Opcode::kNop) << 8);
    return;
  }
  out->push_back(header(Opcode::kNop, p.dwords - 1));
  out->insert(out->end(), p.dwords - 1, 0u);
}

void encode_one(const SetShReg& p, std::vector<uint32_t>* out) {
  const uint64_t end = uint64_t(p.reg) + p.values.size();
  if (p.values.empty() || p.values.size() > kMaxBody - 1 || p.reg < reg::kShRegStart ||
      end > reg::kShRegEnd) {
    PR_FAIL(kInvalidArgument, "PM4 SET_SH_REG of ", p.values.size(), " value(s) at register ",
            hex(p.reg), ": need 1 or more values inside the SH range [", hex(reg::kShRegStart),
            ", ", hex(reg::kShRegEnd), ")");
  }
  out->push_back(header(Opcode::kSetShReg, static_cast<uint32_t>(p.values.size() + 1)));
  out->push_back(p.reg - reg::kShRegStart);
  out->insert(out->end(), p.values.begin(), p.values.end());
}

void encode_one(const AcquireMem& p, std::vector<uint32_t>* out) {
  emit(out, Opcode::kAcquireMem,
       {p.coher_cntl, lo(p.coher_size), hi(p.coher_size), lo(p.coher_base), hi(p.coher_base),
        p.poll_interval, p.gcr_cntl});
}

void encode_one(const ReleaseMem& p, std::vector<uint32_t>* out) {
  check_address("RELEASE_MEM", "address", p.address, p.data_sel == DataSel::kValue32 ? 4 : 8);
  emit(out, Opcode::kReleaseMem,
       {(p.event_type & 0x3f) | (p.event_index & 0xf) << 8 | (p.gcr & 0xfffff000u),
        (p.dst_sel & 3) << 16 | (uint32_t(p.int_sel) & 7) << 24 | (uint32_t(p.data_sel) & 7) << 29,
        lo(p.address), hi(p.address), lo(p.data), hi(p.data), p.int_ctxid});
}

void encode_one(const WaitRegMem& p, std::vector<uint32_t>* out) {
  if (p.mem_space == MemSpace::kMemory) check_address("WAIT_REG_MEM", "address", p.address, 4);
  emit(out, Opcode::kWaitRegMem,
       {(uint32_t(p.function) & 7) | (uint32_t(p.mem_space) & 3) << 4 | (p.operation & 3) << 6 |
            (p.engine & 3) << 8,
        lo(p.address), hi(p.address), p.reference, p.mask, p.poll_interval});
}

void encode_one(const DispatchDirect& p, std::vector<uint32_t>* out) {
  emit(out, Opcode::kDispatchDirect, {p.dim_x, p.dim_y, p.dim_z, p.initiator});
}

void encode_one(const EventWrite& p, std::vector<uint32_t>* out) {
  emit(out, Opcode::kEventWrite, {(p.event_type & 0x3f) | (p.event_index & 0xf) << 8});
}

void encode_one(const IndirectBuffer& p, std::vector<uint32_t>* out) {
  check_address("INDIRECT_BUFFER", "address", p.address, 4);
  if (p.address >> 48 != 0 || p.size_dwords == 0 || p.size_dwords > 0xfffff) {
    PR_FAIL(kInvalidArgument, "PM4 INDIRECT_BUFFER at ", hex(p.address), " of ", p.size_dwords,
            " dwords: need a 48-bit address and 1..1048575 dwords");
  }
  emit(out, Opcode::kIndirectBuffer,
       {lo(p.address), hi(p.address),
        p.size_dwords | (p.chain ? kIbChain : 0) | (p.valid ? kIbValid : 0) | (p.vmid & 0xf) << 24});
}

// ---- decoding

struct Cursor : packet::Cursor {
  uint32_t opcode;
  uint32_t body;  // dwords after the header

  std::string describe() const {
    return str_cat("opcode ", hex(opcode), " (", opcode_name(opcode), ")");
  }
  [[noreturn]] void reject(const std::string& why) const { fail(describe(), why); }
  uint32_t at(size_t i) const { return stream[offset + 1 + i]; }
  void expect_body(uint32_t dwords) const {
    if (body != dwords) {
      reject(str_cat("has ", body, " body dwords, this packet has exactly ", dwords,
                     " (header count field ", body - 1, ", expected ", dwords - 1, ")"));
    }
  }
  void expect_aligned(const char* field, uint64_t address, uint64_t align) const {
    packet::Cursor::expect_aligned(field, address, align, describe());
  }
};

Packet decode_set_sh_reg(const Cursor& c) {
  if (c.body < 2) c.reject("needs a register offset and at least one value");
  SetShReg p;
  p.reg = reg::kShRegStart + c.at(0);
  const uint64_t end = uint64_t(p.reg) + (c.body - 1);
  if (c.at(0) >= reg::kShRegEnd - reg::kShRegStart || end > reg::kShRegEnd) {
    c.reject(str_cat("registers ", hex(p.reg), "..", hex(end - 1), " leave the SH range [",
                     hex(reg::kShRegStart), ", ", hex(reg::kShRegEnd), ")"));
  }
  p.values.assign(c.stream.begin() + c.offset + 2, c.stream.begin() + c.offset + 1 + c.body);
  return p;
}

Packet decode_acquire_mem(const Cursor& c) {
  c.expect_body(7);
  AcquireMem p;
  p.coher_cntl = c.at(0);
  p.coher_size = join(c.at(1), c.at(2));
  p.coher_base = join(c.at(3), c.at(4));
  p.poll_interval = c.at(5);
  p.gcr_cntl = c.at(6);
  if ((p.gcr_cntl & ~gcr::kMask) != 0) {
    c.reject(str_cat("GCR_CNTL ", hex(p.gcr_cntl), " sets bits above bit 18"));
  }
  return p;
}

Packet decode_release_mem(const Cursor& c) {
  c.expect_body(7);
  ReleaseMem p;
  p.event_type = c.at(0) & 0x3f;
  p.event_index = c.at(0) >> 8 & 0xf;
  p.gcr = c.at(0) & 0xfffff000u;
  const uint32_t data_sel = c.at(1) >> 29 & 7;
  const uint32_t int_sel = c.at(1) >> 24 & 7;
  if (data_sel > uint32_t(DataSel::kTimestamp)) {
    c.reject(str_cat("DATA_SEL ", data_sel, " is not modelled (0 none, 1 32-bit, 2 64-bit, "
                                            "3 timestamp)"));
  }
  if (int_sel > uint32_t(IntSel::kDataAfterWriteConfirm)) {
    c.reject(str_cat("INT_SEL ", int_sel, " is not modelled (0..3)"));
  }
  p.data_sel = DataSel(data_sel);
  p.int_sel = IntSel(int_sel);
  p.dst_sel = c.at(1) >> 16 & 3;
  p.address = join(c.at(2), c.at(3));
  p.data = join(c.at(4), c.at(5));
  p.int_ctxid = c.at(6);
  if (p.data_sel != DataSel::kNone) {
    c.expect_aligned("address", p.address, p.data_sel == DataSel::kValue32 ? 4 : 8);
  }
  return p;
}

Packet decode_wait_reg_mem(const Cursor& c) {
  c.expect_body(6);
  WaitRegMem p;
  const uint32_t function = c.at(0) & 7;
  const uint32_t space = c.at(0) >> 4 & 3;
  if (function == 7) c.reject("compare function 7 is reserved");
  if (space > 1) c.reject(str_cat("MEM_SPACE ", space, " is reserved (0 register, 1 memory)"));
  p.function = CompareFunction(function);
  p.mem_space = MemSpace(space);
  p.operation = c.at(0) >> 6 & 3;
  p.engine = c.at(0) >> 8 & 3;
  p.address = join(c.at(1), c.at(2));
  p.reference = c.at(3);
  p.mask = c.at(4);
  p.poll_interval = c.at(5);
  if (p.mem_space == MemSpace::kMemory) c.expect_aligned("poll address", p.address, 4);
  return p;
}

Packet decode_dispatch_direct(const Cursor& c) {
  c.expect_body(4);
  DispatchDirect p{c.at(0), c.at(1), c.at(2), c.at(3)};
  if ((p.initiator & kDispatchComputeShaderEn) == 0) {
    c.reject(str_cat("DISPATCH_INITIATOR ", hex(p.initiator),
                     " lacks COMPUTE_SHADER_EN (bit 0): nothing would run"));
  }
  return p;
}

Packet decode_event_write(const Cursor& c) {
  if (c.body == 3) c.reject("EVENT_WRITE with an address (sample events) is not modelled");
  c.expect_body(1);
  return EventWrite{c.at(0) & 0x3f, c.at(0) >> 8 & 0xf};
}

Packet decode_indirect_buffer(const Cursor& c) {
  c.expect_body(3);
  IndirectBuffer p;
  p.address = join(c.at(0), c.at(1) & 0xffff);
  const uint32_t control = c.at(2);
  p.size_dwords = control & 0xfffff;
  p.chain = (control & kIbChain) != 0;
  p.valid = (control & kIbValid) != 0;
  p.vmid = control >> 24 & 0xf;
  c.expect_aligned("IB address", p.address, 4);
  if (p.size_dwords == 0) c.reject("IB size is 0 dwords");
  if (!p.valid) c.reject("the VALID bit (23) is clear: compute queues skip such an IB");
  return p;
}

}  // namespace

std::string_view opcode_name(uint32_t opcode) {
  switch (opcode) {
    case 0x10: return "NOP";
    case 0x15: return "DISPATCH_DIRECT";
    case 0x3c: return "WAIT_REG_MEM";
    case 0x3f: return "INDIRECT_BUFFER";
    case 0x40: return "COPY_DATA";
    case 0x46: return "EVENT_WRITE";
    case 0x49: return "RELEASE_MEM";
    case 0x58: return "ACQUIRE_MEM";
    case 0x76: return "SET_SH_REG";
    case 0x79: return "SET_UCONFIG_REG";
    default: return "unknown";
  }
}

std::string_view packet_name(const Packet& packet) {
  return std::visit(
      [](const auto& p) -> std::string_view {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, Nop>) return "NOP";
        if constexpr (std::is_same_v<T, SetShReg>) return "SET_SH_REG";
        if constexpr (std::is_same_v<T, AcquireMem>) return "ACQUIRE_MEM";
        if constexpr (std::is_same_v<T, ReleaseMem>) return "RELEASE_MEM";
        if constexpr (std::is_same_v<T, WaitRegMem>) return "WAIT_REG_MEM";
        if constexpr (std::is_same_v<T, DispatchDirect>) return "DISPATCH_DIRECT";
        if constexpr (std::is_same_v<T, EventWrite>) return "EVENT_WRITE";
        if constexpr (std::is_same_v<T, IndirectBuffer>) return "INDIRECT_BUFFER";
      },
      packet);
}

void encode(const Packet& packet, std::vector<uint32_t>* out) {
  std::visit([out](const auto& p) { encode_one(p, out); }, packet);
}

Writer& Writer::release_mem(uint64_t address, uint64_t value, IntSel int_sel,
                            uint32_t int_ctxid) {
  ReleaseMem p;
  p.gcr = release_gcr::kFlushAll;
  p.address = address;
  p.data = value;
  p.int_sel = int_sel;
  p.int_ctxid = int_ctxid;
  return add(p);
}

Writer& Writer::wait_reg_mem(uint64_t address, uint32_t reference, CompareFunction function,
                             uint32_t mask) {
  WaitRegMem p;
  p.function = function;
  p.address = address;
  p.reference = reference;
  p.mask = mask;
  return add(p);
}

Writer& Writer::dispatch_direct(uint32_t x, uint32_t y, uint32_t z, bool wave32) {
  return add(DispatchDirect{
      x, y, z,
      kDispatchComputeShaderEn | kDispatchForceStartAt000 | (wave32 ? kDispatchCsW32En : 0)});
}

Decoded decode_packet(std::span<const uint32_t> stream, size_t offset,
                      std::string_view stream_name) {
  PR_CHECK(offset < stream.size()) << "decode at dword " << offset << " of " << stream.size();
  const uint32_t head = stream[offset];
  Cursor c{{stream, offset, stream_name, head}, head >> 8 & 0xff, (head >> 16 & 0x3fff) + 1};
  if (head >> 30 != 3) {
    c.opcode = 0;
    PR_FAIL(kInvalidArgument, stream_name, ": packet at dword ", offset, " (byte ", offset * 4,
            "), header ", hex(head), ": a type-", head >> 30,
            " packet; only type-3 packets are accepted (is the write pointer past the end of "
            "what was written?)");
  }
  if (c.opcode == uint32_t(Opcode::kNop) && c.body == 0x4000) {
    return Decoded{Nop{1}, offset, 1};  // count 0x3fff: the header alone
  }
  if (opcode_name(c.opcode) == "unknown" || c.opcode == 0x40 || c.opcode == 0x79) {
    c.reject("unknown or unsupported opcode");
  }
  c.expect_in_stream(1 + size_t(c.body), c.describe());
  Packet packet;
  switch (Opcode(c.opcode)) {
    case Opcode::kNop: packet = Nop{c.body + 1}; break;
    case Opcode::kSetShReg: packet = decode_set_sh_reg(c); break;
    case Opcode::kAcquireMem: packet = decode_acquire_mem(c); break;
    case Opcode::kReleaseMem: packet = decode_release_mem(c); break;
    case Opcode::kWaitRegMem: packet = decode_wait_reg_mem(c); break;
    case Opcode::kDispatchDirect: packet = decode_dispatch_direct(c); break;
    case Opcode::kEventWrite: packet = decode_event_write(c); break;
    case Opcode::kIndirectBuffer: packet = decode_indirect_buffer(c); break;
  }
  return Decoded{std::move(packet), offset, size_t(c.body) + 1};
}

std::vector<Decoded> decode_stream(std::span<const uint32_t> stream,
                                   std::string_view stream_name) {
  return packet::decode_all<Decoded>(stream, [&](std::span<const uint32_t> all, size_t offset) {
    return decode_packet(all, offset, stream_name);
  });
}

}  // namespace petaring::amd::pm4
