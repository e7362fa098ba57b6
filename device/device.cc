#include "device/device.h"

#include "runtime/check.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <string>

namespace petaring {

std::string Link::to_string() const {
  char text[96];
  switch (kind) {
    case LinkKind::kHost:
      return "host";
    case LinkKind::kPcie:
      std::snprintf(text, sizeof(text), "PCIe %d.0 x%d", pcie_gen, pcie_width);
      break;
    case LinkKind::kUsb3:
      std::snprintf(text, sizeof(text), "USB3");
      break;
  }
  std::string out = text;
  if (bandwidth_gbps > 0) {
    char bw[48];
    std::snprintf(bw, sizeof(bw), " (%.1f GB/s)", bandwidth_gbps);
    out += bw;
  }
  return out;
}

std::string format_bytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  if (unit == 0) {
    std::snprintf(text, sizeof(text), "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(text, sizeof(text), value == std::floor(value) ? "%.0f %s" : value < 10 ? "%.2f %s" : "%.1f %s", value,
                  kUnits[unit]);
  }
  return text;
}

bool parse_bytes(std::string_view text, uint64_t* bytes) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return false;
  double number;
  try {
    size_t used = 0;
    number = std::stod(std::string(text.substr(0, i)), &used);
    if (used != i) return false;
  } catch (...) {
    return false;
  }
  std::string unit;
  for (char c : text.substr(i)) {
    if (c != ' ') unit += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  double scale;
  if (unit.empty() || unit == "b") scale = 1;
  else if (unit == "kib" || unit == "k") scale = 1024.0;
  else if (unit == "mib" || unit == "m") scale = 1024.0 * 1024;
  else if (unit == "gib" || unit == "g") scale = 1024.0 * 1024 * 1024;
  else if (unit == "tib" || unit == "t") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "kb") scale = 1e3;
  else if (unit == "mb") scale = 1e6;
  else if (unit == "gb") scale = 1e9;
  else if (unit == "tb") scale = 1e12;
  else return false;
  double value = number * scale;
  if (!(value >= 0) || value > 1.8e19) return false;
  *bytes = static_cast<uint64_t>(std::llround(value));
  return true;
}

void expect_kernel_args(const KernelArgs& args, size_t tensors, size_t floats, size_t ints,
                        std::string_view kernel) {
  PR_CHECK(args.tensors.size() == tensors && args.floats.size() == floats &&
           args.ints.size() == ints)
      << kernel << " takes " << tensors << " tensors, " << floats << " floats and " << ints
      << " ints; got " << args.tensors.size() << ", " << args.floats.size() << " and "
      << args.ints.size();
}

}  // namespace petaring
