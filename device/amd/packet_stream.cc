#include "device/amd/packet_stream.h"

#include <cstdio>

#include "runtime/error.h"

namespace petaring::amd::packet {

std::string hex(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

void check_aligned(std::string_view engine, std::string_view packet, std::string_view field,
                   uint64_t address, uint64_t align) {
  if (address % align != 0) {
    PR_FAIL(kInvalidArgument, engine, " ", packet, ": ", field, " ", hex(address), " must be ",
            align, "-byte aligned");
  }
}

void Cursor::fail(std::string_view describe, const std::string& why) const {
  PR_FAIL(kInvalidArgument, name, ": packet at dword ", offset, " (byte ", offset * 4,
          "), header ", hex(header), ", ", describe, ": ", why);
}

void Cursor::expect_in_stream(size_t dwords, std::string_view describe) const {
  if (offset + dwords > stream.size()) {
    fail(describe, str_cat("truncated: needs ", dwords, " dwords, only ", stream.size() - offset,
                           " left in the stream"));
  }
}

void Cursor::expect_aligned(std::string_view field, uint64_t address, uint64_t align,
                            std::string_view describe) const {
  if (address % align != 0) {
    fail(describe, str_cat(field, " ", hex(address), " is not ", align, "-byte aligned"));
  }
}

}  // namespace petaring::amd::packet
