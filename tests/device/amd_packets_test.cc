// Golden dword vectors for the PM4, SDMA and AQL encoders, written out by hand from the
// public formats (header = 3 << 30 | count << 16 | opcode << 8, SDMA op | sub_op << 8,
// hsa_kernel_dispatch_packet_t), then the decoders: round trips and rejections.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "device/amd/aql.h"
#include "device/amd/pm4.h"
#include "device/amd/sdma.h"
#include "runtime/error.h"

namespace petaring::amd {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// The message of the Error `fn` throws ("" when it throws none).
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an Error";
  return "";
}

constexpr uint64_t kAddr = 0x7f00'1234'5678ull;  // 8-byte aligned, 48-bit

// ---- PM4 golden vectors

TEST(Pm4Encode, Nop) {
  EXPECT_THAT(pm4::Writer().nop(1).dwords(), ElementsAre(0xffff1000u));
  EXPECT_THAT(pm4::Writer().nop(3).dwords(), ElementsAre(0xc0011000u, 0u, 0u));
}

TEST(Pm4Encode, SetShReg) {
  pm4::Writer w;
  w.set_sh_reg(pm4::reg::kComputePgmLo, {0x12345678u, 0x9au});
  EXPECT_THAT(w.dwords(), ElementsAre(0xc0027600u, 0x20cu, 0x12345678u, 0x9au));
}

TEST(Pm4Encode, AcquireMemCoversEverything) {
  EXPECT_THAT(pm4::Writer().acquire_mem().dwords(),
              ElementsAre(0xc0065800u, 0u, 0xffffffffu, 0x00ffffffu, 0u, 0u, 10u, 0xc3f1u));
}

TEST(Pm4Encode, ReleaseMemWritesA64BitSignalAtEndOfPipe) {
  pm4::Writer w;
  w.release_mem(kAddr, 0x1'0000'0002ull, pm4::IntSel::kInterruptAfterWriteConfirm, 9);
  EXPECT_THAT(w.dwords(), ElementsAre(0xc0064900u, 0x0070f514u, 0x42000000u, 0x12345678u,
                                      0x7f00u, 2u, 1u, 9u));
}

TEST(Pm4Encode, WaitRegMemOnMemory) {
  pm4::Writer w;
  w.wait_reg_mem(0x7f00'0000'1000ull, 5);
  EXPECT_THAT(w.dwords(),
              ElementsAre(0xc0053c00u, 0x15u, 0x1000u, 0x7f00u, 5u, 0xffffffffu, 4u));
}

TEST(Pm4Encode, DispatchDirectWave32) {
  EXPECT_THAT(pm4::Writer().dispatch_direct(4, 2, 1).dwords(),
              ElementsAre(0xc0031500u, 4u, 2u, 1u, 0x8005u));
  EXPECT_THAT(pm4::Writer().dispatch_direct(1, 1, 1, false).dwords(),
              ElementsAre(0xc0031500u, 1u, 1u, 1u, 0x5u));
}

TEST(Pm4Encode, EventWriteCsPartialFlush) {
  EXPECT_THAT(pm4::Writer().event_write().dwords(), ElementsAre(0xc0004600u, 0x407u));
}

TEST(Pm4Encode, IndirectBufferIsValidForCompute) {
  EXPECT_THAT(pm4::Writer().indirect_buffer(0x7f00'0000'2000ull, 64).dwords(),
              ElementsAre(0xc0023f00u, 0x2000u, 0x7f00u, 0x00800040u));
}

TEST(Pm4Encode, RefusesWhatCannotBeEncoded) {
  EXPECT_THAT(error_of([] { pm4::Writer().set_sh_reg(0x2000, {1}); }), HasSubstr("SH range"));
  EXPECT_THAT(error_of([] { pm4::Writer().set_sh_reg(pm4::reg::kComputePgmLo, {}); }),
              HasSubstr("SET_SH_REG"));
  EXPECT_THAT(error_of([] { pm4::Writer().release_mem(kAddr + 4, 1); }),
              HasSubstr("8-byte aligned"));
  EXPECT_THAT(error_of([] { pm4::Writer().indirect_buffer(0x1000, 0); }),
              HasSubstr("1..1048575"));
  EXPECT_THAT(error_of([] { pm4::Writer().nop(0); }), HasSubstr("NOP"));
}

// ---- PM4 decoding

// One of every packet, back to back, as a dispatch sequence would have them.
pm4::Writer every_pm4_packet() {
  pm4::Writer w;
  w.acquire_mem()
      .set_sh_reg(pm4::reg::kComputeNumThreadX, {64, 1, 1})
      .dispatch_direct(8, 1, 1)
      .event_write()
      .release_mem(kAddr, 42)
      .wait_reg_mem(kAddr, 42)
      .indirect_buffer(0x7f00'0000'2000ull, 16)
      .nop(1)
      .nop(4);
  return w;
}

TEST(Pm4Decode, RoundTripsEveryPacketWithOffsets) {
  const pm4::Writer w = every_pm4_packet();
  const std::vector<pm4::Decoded> packets = pm4::decode_stream(w.dwords());
  ASSERT_EQ(packets.size(), 9u);
  std::vector<std::string> names;
  size_t offset = 0;
  std::vector<uint32_t> reencoded;
  for (const pm4::Decoded& d : packets) {
    names.emplace_back(pm4::packet_name(d.packet));
    EXPECT_EQ(d.offset, offset);
    offset += d.dwords;
    pm4::encode(d.packet, &reencoded);
  }
  EXPECT_EQ(offset, w.size());
  EXPECT_THAT(names, ElementsAre("ACQUIRE_MEM", "SET_SH_REG", "DISPATCH_DIRECT", "EVENT_WRITE",
                                 "RELEASE_MEM", "WAIT_REG_MEM", "INDIRECT_BUFFER", "NOP", "NOP"));
  EXPECT_THAT(reencoded, ElementsAreArray(w.dwords()));

  const auto& regs = std::get<pm4::SetShReg>(packets[1].packet);
  EXPECT_EQ(regs.reg, pm4::reg::kComputeNumThreadX);
  EXPECT_THAT(regs.values, ElementsAre(64u, 1u, 1u));
  const auto& release = std::get<pm4::ReleaseMem>(packets[4].packet);
  EXPECT_EQ(release.address, kAddr);
  EXPECT_EQ(release.data, 42u);
  EXPECT_EQ(release.data_sel, pm4::DataSel::kValue64);
  EXPECT_EQ(std::get<pm4::Nop>(packets[7].packet).dwords, 1u);
  EXPECT_EQ(std::get<pm4::Nop>(packets[8].packet).dwords, 4u);
}

TEST(Pm4Decode, RejectsUnknownOpcodeWithOffsetAndOpcode) {
  std::vector<uint32_t> s = pm4::Writer().event_write().nop(1).dwords();  // 3 dwords
  s.push_back(0xc0002200u);  // type 3, opcode 0x22, one body dword
  s.push_back(0u);
  const std::string message = error_of([&] { pm4::decode_stream(s, "amd:0 compute ring"); });
  EXPECT_THAT(message, HasSubstr("amd:0 compute ring"));
  EXPECT_THAT(message, HasSubstr("dword 3 (byte 12)"));
  EXPECT_THAT(message, HasSubstr("opcode 0x22"));
  EXPECT_THAT(message, HasSubstr("unknown"));
}

TEST(Pm4Decode, RejectsTruncatedPacket) {
  std::vector<uint32_t> s = pm4::Writer().set_sh_reg(pm4::reg::kComputePgmLo, {1, 2}).dwords();
  s.pop_back();
  const std::string message = error_of([&] { pm4::decode_stream(s); });
  EXPECT_THAT(message, HasSubstr("SET_SH_REG"));
  EXPECT_THAT(message, HasSubstr("truncated: needs 4 dwords, only 3 left"));
}

TEST(Pm4Decode, RejectsWrongBodySize) {
  std::vector<uint32_t> s = pm4::Writer().acquire_mem().dwords();
  s[0] = pm4::header(pm4::Opcode::kAcquireMem, 6);  // one dword short
  s.pop_back();
  EXPECT_THAT(error_of([&] { pm4::decode_stream(s); }),
              HasSubstr("ACQUIRE_MEM): has 6 body dwords, this packet has exactly 7"));
  std::vector<uint32_t> d = pm4::Writer().dispatch_direct(1, 1, 1).dwords();
  d[0] = pm4::header(pm4::Opcode::kDispatchDirect, 3);
  d.pop_back();
  EXPECT_THAT(error_of([&] { pm4::decode_stream(d); }), HasSubstr("exactly 4"));
}

TEST(Pm4Decode, RejectsNonType3AndBadFields) {
  EXPECT_THAT(error_of([] { pm4::decode_stream(std::vector<uint32_t>{0u}); }),
              HasSubstr("type-0 packet"));
  std::vector<uint32_t> release = pm4::Writer().release_mem(kAddr, 1).dwords();
  release[3] += 4;  // address no longer 8-byte aligned for 64-bit data
  EXPECT_THAT(error_of([&] { pm4::decode_stream(release); }), HasSubstr("not 8-byte aligned"));
  std::vector<uint32_t> ib = pm4::Writer().indirect_buffer(0x2000, 16).dwords();
  ib[3] &= ~(1u << 23);
  EXPECT_THAT(error_of([&] { pm4::decode_stream(ib); }), HasSubstr("VALID bit"));
  std::vector<uint32_t> regs = pm4::Writer().set_sh_reg(0x2fff, {1}).dwords();
  regs[0] = pm4::header(pm4::Opcode::kSetShReg, 3);  // two values from 0x2fff: past the end
  regs.push_back(2);
  EXPECT_THAT(error_of([&] { pm4::decode_stream(regs); }), HasSubstr("leave the SH range"));
  std::vector<uint32_t> dispatch = pm4::Writer().dispatch_direct(1, 1, 1).dwords();
  dispatch[4] = 0;
  EXPECT_THAT(error_of([&] { pm4::decode_stream(dispatch); }), HasSubstr("COMPUTE_SHADER_EN"));
}

TEST(CompareFunction, MatchesTheWaitSemantics) {
  EXPECT_TRUE(compare_satisfied(CompareFunction::kGreaterEqual, 5, 0xffffffff, 5));
  EXPECT_FALSE(compare_satisfied(CompareFunction::kGreaterEqual, 4, 0xffffffff, 5));
  EXPECT_TRUE(compare_satisfied(CompareFunction::kEqual, 0x1ff, 0xff, 0xff));
  EXPECT_TRUE(compare_satisfied(CompareFunction::kNotEqual, 1, 1, 0));
  EXPECT_FALSE(compare_satisfied(CompareFunction::kLess, 3, 0xffffffff, 3));
  EXPECT_TRUE(compare_satisfied(CompareFunction::kAlways, 0, 0, 7));
}

// ---- SDMA golden vectors

TEST(SdmaEncode, CopyLinear) {
  EXPECT_THAT(sdma::Writer().copy(0x2000'0000, 0x1'1000'0000ull, 256).dwords(),
              ElementsAre(0x1u, 255u, 0u, 0x10000000u, 1u, 0x20000000u, 0u));
}

TEST(SdmaEncode, CopySplitsAtTheMaximumCount) {
  const uint64_t src = 0x1000'0000, dst = 0x8000'0000, bytes = 2 * sdma::kMaxCopyBytes + 3;
  const std::vector<sdma::Decoded> packets =
      sdma::decode_stream(sdma::Writer().copy(dst, src, bytes).dwords());
  ASSERT_EQ(packets.size(), 3u);
  const uint64_t expected_bytes[3] = {sdma::kMaxCopyBytes, sdma::kMaxCopyBytes, 3};
  uint64_t done = 0;
  for (int i = 0; i < 3; ++i) {
    const auto& copy = std::get<sdma::CopyLinear>(packets[i].packet);
    EXPECT_EQ(copy.bytes, expected_bytes[i]) << "chunk " << i;
    EXPECT_EQ(copy.src, src + done);
    EXPECT_EQ(copy.dst, dst + done);
    done += copy.bytes;
  }
  // Exactly the maximum is one packet whose count field is max - 1.
  EXPECT_THAT(sdma::Writer().copy(dst, src, sdma::kMaxCopyBytes).dwords(),
              ElementsAre(0x1u, 0x3fffffu, 0u, 0x10000000u, 0u, 0x80000000u, 0u));
  EXPECT_TRUE(sdma::Writer().copy(dst, src, 0).dwords().empty());
}

TEST(SdmaEncode, FenceTrapPollTimestampNopWrite) {
  EXPECT_THAT(sdma::Writer().fence(0x7f00'0000'0100ull, 7).dwords(),
              ElementsAre(0x00030005u, 0x100u, 0x7f00u, 7u));
  EXPECT_THAT(sdma::Writer().trap(5).dwords(), ElementsAre(6u, 5u));
  EXPECT_THAT(sdma::Writer().poll_regmem(0x7f00'0000'0100ull, 3).dwords(),
              ElementsAre(0xd0000008u, 0x100u, 0x7f00u, 3u, 0xffffffffu, 0x0fff0004u));
  EXPECT_THAT(sdma::Writer().timestamp(0x7f00'0000'0200ull).dwords(),
              ElementsAre(0x0000020du, 0x200u, 0x7f00u));
  EXPECT_THAT(sdma::Writer().nop(3).dwords(), ElementsAre(0x00020000u, 0u, 0u));
  EXPECT_THAT(sdma::Writer().write(0x40, {9, 8}).dwords(),
              ElementsAre(0x2u, 0x40u, 0u, 1u, 9u, 8u));
}

TEST(SdmaEncode, PadsToEightDwords) {
  sdma::Writer w;
  w.fence(0x100, 1).pad_to();
  EXPECT_EQ(w.size(), 8u);
  EXPECT_EQ(w.dwords()[4], 0x00030000u);  // one NOP covering the last 4 dwords
  w.pad_to();
  EXPECT_EQ(w.size(), 8u);
}

TEST(SdmaEncode, RefusesWhatCannotBeEncoded) {
  EXPECT_THAT(error_of([] { sdma::Writer().fence(0x102, 1); }), HasSubstr("4-byte aligned"));
  EXPECT_THAT(error_of([] { sdma::Writer().timestamp(0x104); }), HasSubstr("8-byte aligned"));
  EXPECT_THAT(error_of([] { sdma::Writer().add(sdma::CopyLinear{0, 0, 0}); }),
              HasSubstr("COPY_LINEAR of 0 bytes"));
}

// ---- SDMA decoding

TEST(SdmaDecode, RoundTripsEveryPacket) {
  sdma::Writer w;
  w.copy(0x2000, 0x1000, 64).write(0x40, {1, 2, 3}).fence(0x100, 7).trap(1)
      .poll_regmem(0x100, 7).timestamp(0x200).pad_to();
  const std::vector<sdma::Decoded> packets = sdma::decode_stream(w.dwords());
  std::vector<std::string> names;
  std::vector<uint32_t> reencoded;
  for (const sdma::Decoded& d : packets) {
    names.emplace_back(sdma::packet_name(d.packet));
    sdma::encode(d.packet, &reencoded);
  }
  EXPECT_THAT(names, ElementsAre("COPY_LINEAR", "WRITE_LINEAR", "FENCE", "TRAP", "POLL_REGMEM",
                                 "TIMESTAMP", "NOP"));
  EXPECT_THAT(reencoded, ElementsAreArray(w.dwords()));
  EXPECT_EQ(std::get<sdma::Fence>(packets[2].packet), (sdma::Fence{0x100, 7, 3}));
}

TEST(SdmaDecode, RejectsUnknownTruncatedAndOversized) {
  std::vector<uint32_t> s = sdma::Writer().trap(0).dwords();
  s.push_back(3u);  // op 3 does not exist
  std::string message = error_of([&] { sdma::decode_stream(s, "amd:0 sdma ring"); });
  EXPECT_THAT(message, HasSubstr("amd:0 sdma ring: packet at dword 2 (byte 8)"));
  EXPECT_THAT(message, HasSubstr("op 3 (unknown)"));

  std::vector<uint32_t> copy = sdma::Writer().copy(0x2000, 0x1000, 64).dwords();
  copy.pop_back();
  EXPECT_THAT(error_of([&] { sdma::decode_stream(copy); }),
              HasSubstr("truncated: needs 7 dwords, only 6 left"));

  std::vector<uint32_t> big = sdma::Writer().copy(0x2000, 0x1000, 64).dwords();
  big[1] = uint32_t(sdma::kMaxCopyBytes);  // count field = max, i.e. max + 1 bytes
  EXPECT_THAT(error_of([&] { sdma::decode_stream(big); }), HasSubstr("copies 4194305 bytes"));

  std::vector<uint32_t> sub = sdma::Writer().copy(0x2000, 0x1000, 64).dwords();
  sub[0] |= 1u << 8;  // COPY sub-op 1 (tiled)
  EXPECT_THAT(error_of([&] { sdma::decode_stream(sub); }), HasSubstr("only sub-op 0"));

  std::vector<uint32_t> fence = sdma::Writer().fence(0x100, 1).dwords();
  fence[1] = 0x101;
  EXPECT_THAT(error_of([&] { sdma::decode_stream(fence); }), HasSubstr("not 4-byte aligned"));

  std::vector<uint32_t> nop = {0x00050000u, 0u};  // NOP claiming 6 dwords
  EXPECT_THAT(error_of([&] { sdma::decode_stream(nop); }), HasSubstr("truncated"));
}

// Both decoders report through the one cursor of packet_stream.h: the same prefix (stream,
// dword and byte offset, header), then their own packet description.
TEST(PacketStream, Pm4AndSdmaErrorsShareOneFormat) {
  std::vector<uint32_t> pm4_stream = pm4::Writer().nop(1).release_mem(0x1000, 1).dwords();
  pm4_stream.pop_back();
  std::vector<uint32_t> sdma_stream = sdma::Writer().nop(1).fence(0x1000, 1).dwords();
  sdma_stream.pop_back();
  const std::string pm4_error = error_of([&] { pm4::decode_stream(pm4_stream, "ring A"); });
  const std::string sdma_error = error_of([&] { sdma::decode_stream(sdma_stream, "ring B"); });
  EXPECT_THAT(pm4_error, HasSubstr("ring A: packet at dword 1 (byte 4), header 0xc0064900, "
                                   "opcode 0x49 (RELEASE_MEM): truncated: needs 8 dwords, "
                                   "only 7 left in the stream"));
  EXPECT_THAT(sdma_error, HasSubstr("ring B: packet at dword 1 (byte 4), header 0x30005, op 5 "
                                    "(FENCE) sub-op 0: truncated: needs 4 dwords, only 3 left "
                                    "in the stream"));
  pm4_stream = pm4::Writer().release_mem(0x1000, 1).dwords();
  pm4_stream[3] = 0x1004;  // a 64-bit write to a 4-byte aligned address
  EXPECT_THAT(error_of([&] { pm4::decode_stream(pm4_stream); }),
              HasSubstr("address 0x1004 is not 8-byte aligned"));
  sdma_stream = sdma::Writer().timestamp(0x1000).dwords();
  sdma_stream[1] = 0x1004;
  EXPECT_THAT(error_of([&] { sdma::decode_stream(sdma_stream); }),
              HasSubstr("address 0x1004 is not 8-byte aligned"));
}

// Random streams, some built from valid packets and then corrupted: the decoders either
// decode or throw an Error that names the stream and a dword offset inside it.
TEST(PacketDecodeFuzz, NeverReadsPastTheStream) {
  uint32_t state = 777;
  auto next = [&state] {
    state = state * 1664525u + 1013904223u;
    return state;
  };
  int decoded = 0, rejected = 0;
  for (int round = 0; round < 2000; ++round) {
    std::vector<uint32_t> pm4_stream = every_pm4_packet().dwords();
    sdma::Writer sdma_writer;
    sdma_writer.copy(0x2000, 0x1000, 64).fence(0x100, 7).poll_regmem(0x100, 7).timestamp(0x200)
        .write(0x40, {1, 2}).trap(3);
    std::vector<uint32_t> sdma_stream = sdma_writer.dwords();
    for (std::vector<uint32_t>* s : {&pm4_stream, &sdma_stream}) {
      if (round % 5 == 0) {  // pure noise
        for (uint32_t& dw : *s) dw = next();
      } else {
        for (int f = 0; f < 1 + round % 3; ++f) (*s)[next() % s->size()] ^= 1u << (next() % 32);
      }
      s->resize(s->size() - next() % 3);  // sometimes cut the last packet short
    }
    try {
      pm4::decode_stream(pm4_stream, "fuzz");
      ++decoded;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("fuzz: packet at dword "));
      ++rejected;
    }
    try {
      sdma::decode_stream(sdma_stream, "fuzz");
      ++decoded;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("fuzz: packet at dword "));
      ++rejected;
    }
  }
  EXPECT_GT(decoded, 0);
  EXPECT_GT(rejected, 0);
}

// ---- AQL

TEST(Aql, DispatchPacketBytes) {
  const uint32_t grid[3] = {256, 1, 1};
  const uint16_t wg[3] = {64, 1, 1};
  const aql::KernelDispatchPacket p =
      aql::make_kernel_dispatch(grid, wg, 1, 0x7f00'0000'1000ull, 0x7f00'0000'2000ull, kAddr);
  uint32_t dw[16];
  std::memcpy(dw, &p, sizeof dw);
  // header: type 2 | barrier << 8 | system acquire << 9 | system release << 11; setup = 1.
  EXPECT_THAT(dw, ElementsAre(0x00011502u, 0x00010040u, 0x00000001u, 256u, 1u, 1u, 0u, 0u,
                              0x1000u, 0x7f00u, 0x2000u, 0x7f00u, 0u, 0u, 0x12345678u, 0x7f00u));
}

TEST(Aql, PublishWritesHeaderAndReadBackValidates) {
  const uint32_t grid[3] = {128, 4, 1};
  const uint16_t wg[3] = {32, 2, 1};
  const aql::KernelDispatchPacket p =
      aql::make_kernel_dispatch(grid, wg, 2, 0x1000, 0x2000, 0);
  alignas(64) unsigned char slot[64];
  std::memset(slot, 0xee, sizeof slot);
  aql::publish(slot, p);
  EXPECT_EQ(std::memcmp(slot, &p, 64), 0);
  const aql::KernelDispatchPacket back = aql::read_kernel_dispatch(slot, "slot 0");
  EXPECT_EQ(back.grid_size_y, 4u);
  EXPECT_EQ(back.workgroup_size_y, 2u);

  aql::KernelDispatchPacket bad = p;
  bad.header = aql::make_header(aql::PacketType::kInvalid, false, aql::FenceScope::kNone,
                                aql::FenceScope::kNone);
  aql::publish(slot, bad);
  EXPECT_THAT(error_of([&] { aql::read_kernel_dispatch(slot, "amd:0 AQL slot 3"); }),
              HasSubstr("amd:0 AQL slot 3: AQL packet type 1"));
  bad = p;
  bad.grid_size_z = 2;  // unused third dimension
  aql::publish(slot, bad);
  EXPECT_THAT(error_of([&] { aql::read_kernel_dispatch(slot, "s"); }),
              HasSubstr("unused dimensions 1"));
  bad = p;
  bad.kernel_object = 0x1010;
  aql::publish(slot, bad);
  EXPECT_THAT(error_of([&] { aql::read_kernel_dispatch(slot, "s"); }),
              HasSubstr("64-byte aligned kernel descriptor"));
}

}  // namespace
}  // namespace petaring::amd
