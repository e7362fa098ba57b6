#include "device/amd/mock/mock_executor.h"

#include <chrono>
#include <algorithm>
#include <cstring>
#include <span>
#include <variant>

#include "device/amd/packet_stream.h"
#include "device/amd/pm4.h"
#include "device/amd/sdma.h"
#include "runtime/check.h"

namespace petaring::amd {
namespace {

using packet::hex;

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

uint32_t reg(const MockRing& ring, uint32_t offset) {
  auto it = ring.registers.find(offset);
  return it == ring.registers.end() ? 0 : it->second;
}

}  // namespace

uint64_t mock_gpu_clock() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

void* MockExecutor::memory(uint64_t address, uint64_t bytes, const char* what) {
  if (kfd_.find_gpu_mapped(address, bytes == 0 ? 1 : bytes) == nullptr) {
    throw MockQueueFault{address, ErrorKind::kFailedPrecondition,
                         str_cat(what, " [", hex(address), ", +", bytes,
                                 ") is not inside memory mapped for the GPU")};
  }
  return reinterpret_cast<void*>(address);
}

uint64_t MockExecutor::run(MockRing& ring) {
  const uint64_t ring_dwords = ring.ring_bytes / 4;
  std::span<const uint32_t> stream(ring.ring, ring_dwords);
  uint64_t executed = 0;
  const char* engine = ring.sdma ? "SDMA" : "PM4";
  if (ring.doorbell_value % 4 != 0) {
    throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                         str_cat(engine, " queue ", ring.queue_id, ": doorbell value ",
                                 ring.doorbell_value, " is not a whole number of dwords")};
  }
  while (*ring.read_pointer < ring.doorbell_value) {
    const uint64_t rptr = *ring.read_pointer;
    if (ring.doorbell_value - rptr > ring.ring_bytes) {
      throw MockQueueFault{0, ErrorKind::kFailedPrecondition,
                           str_cat(engine, " queue ", ring.queue_id, ": write pointer ",
                                   ring.doorbell_value, " is more than a ring (",
                                   ring.ring_bytes, " bytes) ahead of the read pointer ", rptr)};
    }
    const size_t offset = (rptr / 4) % ring_dwords;
    // The packet must lie between the read and the write pointer, without wrapping.
    const auto published = std::span<const uint32_t>(stream).first(
        std::min<size_t>(ring_dwords, offset + (ring.doorbell_value - rptr) / 4));
    size_t dwords = 0;
    bool done;
    try {
      done = ring.sdma ? run_sdma(ring, published, offset, &dwords)
                       : run_pm4(ring, published, offset, &dwords, false);
    } catch (const Error& e) {  // a packet the decoder or a handler rejected
      throw MockQueueFault{0, e.kind(), str_cat(engine, " queue ", ring.queue_id, ": ", e.what())};
    } catch (MockQueueFault& fault) {
      fault.message = str_cat(engine, " queue ", ring.queue_id, " at ring dword ", offset, ": ",
                              fault.message);
      throw;
    }
    if (!done) break;  // stalled on a wait; retried after the next doorbell
    *ring.read_pointer = rptr + dwords * 4;
    ++executed;
  }
  return executed;
}

bool MockExecutor::run_pm4(MockRing& ring, std::span<const uint32_t> stream, size_t offset,
                           size_t* dwords, bool in_indirect) {
  const pm4::Decoded decoded =
      pm4::decode_packet(stream, offset, in_indirect ? "PM4 indirect buffer" : "PM4 ring");
  *dwords = decoded.dwords;
  return std::visit(
      Overloaded{
          [](const pm4::Nop&) { return true; },
          [&](const pm4::SetShReg& p) {
            for (size_t i = 0; i < p.values.size(); ++i) {
              ring.registers[p.reg + static_cast<uint32_t>(i)] = p.values[i];
            }
            return true;
          },
          [](const pm4::AcquireMem&) { return true; },
          [](const pm4::EventWrite&) { return true; },
          [&](const pm4::ReleaseMem& p) {
            if (p.dst_sel != 0) {
              throw MockQueueFault{0, ErrorKind::kUnimplemented,
                                   str_cat("RELEASE_MEM to dst_sel ", p.dst_sel,
                                           " (not memory) is not modelled by the mock")};
            }
            switch (p.data_sel) {
              case pm4::DataSel::kNone:
                break;
              case pm4::DataSel::kValue32:
                *static_cast<volatile uint32_t*>(memory(p.address, 4, "RELEASE_MEM destination")) =
                    static_cast<uint32_t>(p.data);
                break;
              case pm4::DataSel::kValue64:
                *static_cast<volatile uint64_t*>(memory(p.address, 8, "RELEASE_MEM destination")) =
                    p.data;
                break;
              case pm4::DataSel::kTimestamp:
                *static_cast<volatile uint64_t*>(memory(p.address, 8, "RELEASE_MEM destination")) =
                    mock_gpu_clock();
                break;
            }
            if (p.int_sel == pm4::IntSel::kInterrupt ||
                p.int_sel == pm4::IntSel::kInterruptAfterWriteConfirm) {
              kfd_.interrupt(p.int_ctxid);
            }
            return true;
          },
          [&](const pm4::WaitRegMem& p) {
            if (p.mem_space != pm4::MemSpace::kMemory || p.operation != 0) {
              throw MockQueueFault{0, ErrorKind::kUnimplemented,
                                   "WAIT_REG_MEM on a register is not modelled by the mock"};
            }
            const uint32_t value =
                *static_cast<volatile uint32_t*>(memory(p.address, 4, "WAIT_REG_MEM address"));
            const bool ok = compare_satisfied(p.function, value, p.mask, p.reference);
            if (!ok && in_indirect) {
              throw MockQueueFault{0, ErrorKind::kUnimplemented,
                                   "an unsatisfied WAIT_REG_MEM inside an indirect buffer "
                                   "cannot stall the mock; wait in the ring instead"};
            }
            return ok;
          },
          [&](const pm4::DispatchDirect& p) {
            MockDispatch d;
            d.program_address = (uint64_t{reg(ring, pm4::reg::kComputePgmHi)} << 32 |
                                 reg(ring, pm4::reg::kComputePgmLo))
                                << 8;
            d.rsrc1 = reg(ring, pm4::reg::kComputePgmRsrc1);
            d.rsrc2 = reg(ring, pm4::reg::kComputePgmRsrc2);
            d.rsrc3 = reg(ring, pm4::reg::kComputePgmRsrc3);
            for (int i = 0; i < pm4::reg::kComputeUserDataCount; ++i) {
              d.user_data[static_cast<size_t>(i)] =
                  reg(ring, pm4::reg::kComputeUserData0 + static_cast<uint32_t>(i));
            }
            for (uint32_t i = 0; i < 3; ++i) {
              d.workgroup_size[i] = reg(ring, pm4::reg::kComputeNumThreadX + i);
            }
            d.grid = {p.dim_x, p.dim_y, p.dim_z};
            d.tmpring_size = reg(ring, pm4::reg::kComputeTmpringSize);
            d.scratch_base = (uint64_t{reg(ring, pm4::reg::kComputeDispatchScratchBaseHi)} << 32 |
                              reg(ring, pm4::reg::kComputeDispatchScratchBaseLo))
                             << 8;
            if (!dispatch_) {
              throw MockQueueFault{0, ErrorKind::kUnimplemented,
                                   "DISPATCH_DIRECT: this mock KFD has no dispatch handler"};
            }
            memory(d.program_address, 4, "kernel code (COMPUTE_PGM_LO/HI)");
            dispatch_(kfd_, d);
            return true;
          },
          [&](const pm4::IndirectBuffer& p) {
            if (in_indirect) {  // compute queues have one level of indirect buffers
              throw MockQueueFault{0, ErrorKind::kInvalidArgument,
                                   "INDIRECT_BUFFER inside an indirect buffer (nesting) is not "
                                   "supported by the compute engine"};
            }
            const auto* ib = static_cast<const uint32_t*>(
                memory(p.address, uint64_t{p.size_dwords} * 4, "INDIRECT_BUFFER"));
            std::span<const uint32_t> ib_stream(ib, p.size_dwords);
            for (size_t at = 0; at < ib_stream.size();) {
              size_t n = 0;
              run_pm4(ring, ib_stream, at, &n, true);
              at += n;
            }
            return true;
          },
      },
      decoded.packet);
}

bool MockExecutor::run_sdma(MockRing& ring, std::span<const uint32_t> stream, size_t offset,
                            size_t* dwords) {
  const sdma::Decoded decoded = sdma::decode_packet(stream, offset, "SDMA ring");
  *dwords = decoded.dwords;
  (void)ring;
  return std::visit(
      Overloaded{
          [](const sdma::Nop&) { return true; },
          [&](const sdma::CopyLinear& p) {
            const void* src = memory(p.src, p.bytes, "COPY_LINEAR source");
            void* dst = memory(p.dst, p.bytes, "COPY_LINEAR destination");
            std::memmove(dst, src, p.bytes);
            return true;
          },
          [&](const sdma::WriteLinear& p) {
            void* dst = memory(p.address, p.data.size() * 4, "WRITE_LINEAR destination");
            std::memcpy(dst, p.data.data(), p.data.size() * 4);
            return true;
          },
          [&](const sdma::Fence& p) {
            *static_cast<volatile uint32_t*>(memory(p.address, 4, "FENCE destination")) = p.value;
            return true;
          },
          [&](const sdma::Trap& p) {
            kfd_.interrupt(p.context);
            return true;
          },
          [&](const sdma::PollRegmem& p) {
            if (!p.memory) {
              throw MockQueueFault{0, ErrorKind::kUnimplemented,
                                   "POLL_REGMEM on a register is not modelled by the mock"};
            }
            const uint32_t value =
                *static_cast<volatile uint32_t*>(memory(p.address, 4, "POLL_REGMEM address"));
            return compare_satisfied(p.function, value, p.mask, p.reference);
          },
          [&](const sdma::Timestamp& p) {
            *static_cast<volatile uint64_t*>(memory(p.address, 8, "TIMESTAMP destination")) =
                mock_gpu_clock();
            return true;
          },
      },
      decoded.packet);
}

}  // namespace petaring::amd
