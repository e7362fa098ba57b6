// Fuzzing the mock KFD's packet executor: streams of valid packets with random fields,
// mutated packets and random dwords must either run or be rejected with a MockQueueFault
// that names the queue, never crash, hang, or touch memory outside GPU mappings.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "device/amd/kfd_access.h"
#include "device/amd/mock/mock_executor.h"
#include "device/amd/mock/mock_kfd.h"
#include "device/amd/pm4.h"
#include "device/amd/sdma.h"

namespace petaring::amd {
namespace {

class Fuzzer {
 public:
  Fuzzer(uint64_t data, uint64_t data_bytes, uint32_t seed)
      : data_(data), data_bytes_(data_bytes), rng_(seed) {}

  // An address inside the data allocation (mostly), or anywhere.
  uint64_t address(uint64_t align) {
    const uint64_t pick = rng_() % 8;
    uint64_t a;
    if (pick == 0) {
      a = rng_() & 0xffff'ffff'ffffull;
    } else if (pick == 1) {
      a = data_ + data_bytes_ - 4 + rng_() % 64;  // straddles the end
    } else {
      a = data_ + rng_() % data_bytes_;
    }
    return a / align * align;
  }
  uint32_t small() { return static_cast<uint32_t>(rng_() % 300); }

  std::vector<uint32_t> pm4_stream() {
    pm4::Writer w;
    const int count = static_cast<int>(rng_() % 8) + 1;
    for (int i = 0; i < count; ++i) {
      switch (rng_() % 7) {
        case 0: w.nop(small() % 6 + 1); break;
        case 1: w.release_mem(address(8), rng_()); break;
        case 2: w.wait_reg_mem(address(4), static_cast<uint32_t>(rng_() % 2)); break;
        case 3: w.set_sh_reg(pm4::reg::kComputePgmLo, {static_cast<uint32_t>(rng_()), 0}); break;
        case 4: w.dispatch_direct(small() + 1, 1, 1); break;
        case 5: w.indirect_buffer(address(4), small() % 32 + 1); break;
        default: w.acquire_mem(); break;
      }
    }
    return mutate(w.dwords());
  }

  std::vector<uint32_t> sdma_stream() {
    sdma::Writer w;
    const int count = static_cast<int>(rng_() % 8) + 1;
    for (int i = 0; i < count; ++i) {
      switch (rng_() % 6) {
        case 0: w.copy(address(1), address(1), small() * 37 + 1); break;
        case 1: w.fence(address(4), static_cast<uint32_t>(rng_())); break;
        case 2: w.timestamp(address(8)); break;
        case 3: w.poll_regmem(address(4), static_cast<uint32_t>(rng_() % 2)); break;
        case 4: w.write(address(4), {1, 2, 3}); break;
        default: w.nop(small() % 4 + 1); break;
      }
    }
    return mutate(w.dwords());
  }

 private:
  // Half the streams stay valid; the others get flipped bits, random dwords or a cut.
  std::vector<uint32_t> mutate(std::vector<uint32_t> dwords) {
    switch (rng_() % 6) {
      case 0: dwords[rng_() % dwords.size()] ^= 1u << (rng_() % 32); break;
      case 1: dwords[rng_() % dwords.size()] = static_cast<uint32_t>(rng_()); break;
      case 2: dwords.resize(rng_() % dwords.size() + 1); break;
      default: break;
    }
    return dwords;
  }

  uint64_t data_, data_bytes_;
  std::mt19937_64 rng_;
};

TEST(AmdExecutorFuzzTest, PacketStreamsRunOrAreRejectedClearly) {
  MockKfdOptions options;
  options.sysfs_root = std::string(PETARING_SOURCE_DIR) + "/tests/fixtures/amd/7900xtx/sys";
  auto kfd = std::make_shared<MockKfd>(options);
  KfdAccess access(kfd, kfd->gpus().at(0));
  GpuAllocation ring_memory = access.allocate(4096, MemoryKind::kGtt, true);
  GpuAllocation pointers = access.allocate(4096, MemoryKind::kGtt, true);
  GpuAllocation data = access.allocate(1 << 20, MemoryKind::kVram, true);
  MockExecutor executor(*kfd, nullptr);  // no dispatch handler: dispatches fault
  int ran = 0, rejected = 0, stalled = 0;
  for (uint32_t seed = 0; seed < 1500; ++seed) {
    Fuzzer fuzz(data.gpu_address(), data.size, seed);
    const bool sdma = seed % 2 == 1;
    std::vector<uint32_t> stream = sdma ? fuzz.sdma_stream() : fuzz.pm4_stream();
    ASSERT_LE(stream.size() * 4, ring_memory.size);
    std::memset(ring_memory.address, 0, ring_memory.size);
    std::memcpy(ring_memory.address, stream.data(), stream.size() * 4);
    MockRing ring;
    ring.queue_id = seed;
    ring.sdma = sdma;
    ring.ring = static_cast<uint32_t*>(ring_memory.address);
    ring.ring_bytes = ring_memory.size;
    ring.read_pointer = static_cast<volatile uint64_t*>(pointers.address);
    ring.write_pointer = ring.read_pointer + 1;
    *ring.read_pointer = 0;
    ring.doorbell_value = stream.size() * 4;
    try {
      executor.run(ring);
      if (*ring.read_pointer == ring.doorbell_value) {
        ++ran;
      } else {
        ++stalled;  // waiting on memory that never reaches the reference
        EXPECT_LT(*ring.read_pointer, ring.doorbell_value);
      }
    } catch (const MockQueueFault& fault) {
      ++rejected;
      EXPECT_NE(fault.message.find(sdma ? "SDMA queue " : "PM4 queue "), std::string::npos)
          << fault.message;
      EXPECT_LE(*ring.read_pointer, ring.doorbell_value);
    }
  }
  // Every outcome happens, so the fuzzer reaches past the decoder.
  EXPECT_GT(ran, 100);
  EXPECT_GT(rejected, 100);
  EXPECT_GT(stalled, 10);
  access.free(data);
  access.free(pointers);
  access.free(ring_memory);
}

}  // namespace
}  // namespace petaring::amd
