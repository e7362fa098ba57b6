// `petaring devices`: the devices this host offers, as an aligned table or, with --json,
// one JSON object per line and device: the cpu backend's virtual GPUs, then the AMD GPUs
// that KFD's sysfs topology lists (none when /sys has no KFD).
//
//   $ petaring devices --cpu-devices 2 --memory 4GiB
//   host: Intel(R) Xeon(R) ..., 2 cores, 7.7 GiB memory, GEMM by OpenBLAS
//   name   kind  arch            memory  link
//   cpu:0  cpu   x86_64 avx512f  4 GiB   host
//   cpu:1  cpu   x86_64 avx512f  4 GiB   host
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "device/amd/topology.h"
#include "device/cpu/cpu_device.h"
#include "runtime/error.h"

namespace petaring::cli {
namespace {

struct DevicesOptions {
  int cpu_devices = 0;  // 0 = one per usable core
  std::string memory = "2GiB";
  bool json = false;
  std::string sysfs = amd::kSysfsRoot;  // where AMD GPUs are looked up (fixture trees in tests)
};

// Prints rows with every column padded to its widest cell; the last column is not padded.
void print_table(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
}

nlohmann::json properties_json(const DeviceProperties& p) {
  return {{"name", p.name},
          {"kind", p.kind},
          {"arch", p.arch},
          {"index", p.index},
          {"memory_bytes", p.memory_bytes},
          {"memory", format_bytes(p.memory_bytes)},
          {"link", p.link.to_string()}};
}

nlohmann::json device_json(const Device& device) { return properties_json(device.properties()); }

int run_devices(const DevicesOptions& options) {
  uint64_t memory_bytes = 0;
  if (!parse_bytes(options.memory, &memory_bytes) || memory_bytes == 0) {
    PR_FAIL(kInvalidArgument, "devices: --memory '", options.memory,
            "' is not a size; write e.g. 2GiB, 512MiB or 1.5GB");
  }
  const HostInfo host = describe_host();
  CpuDeviceOptions cpu;
  cpu.count = options.cpu_devices > 0 ? options.cpu_devices : host.cores;
  cpu.memory_bytes = memory_bytes;
  const auto devices = open_cpu_devices(cpu);
  auto sys = amd::make_real_sys();
  const auto amd_gpus = amd::discover_amd_gpus(*sys, options.sysfs);

  if (options.json) {
    for (const auto& device : devices) std::cout << device_json(*device).dump() << "\n";
    for (size_t i = 0; i < amd_gpus.size(); ++i) {
      nlohmann::json j = properties_json(amd::device_properties(amd_gpus[i], static_cast<int>(i)));
      j["product"] = amd_gpus[i].product;
      j["pci"] = amd_gpus[i].pci_address;
      j["render_node"] = amd_gpus[i].render_node();
      std::cout << j.dump() << "\n";
    }
    return 0;
  }
  std::cout << "host: " << (host.cpu_model.empty() ? "unknown CPU" : host.cpu_model) << ", "
            << host.cores << (host.cores == 1 ? " core, " : " cores, ")
            << (host.memory_bytes > 0 ? format_bytes(host.memory_bytes) : "unknown")
            << " memory, GEMM by " << host.blas << "\n";
  std::vector<std::vector<std::string>> rows = {{"name", "kind", "arch", "memory", "link"}};
  for (const auto& device : devices) {
    const DeviceProperties& p = device->properties();
    rows.push_back({p.name, p.kind, p.arch, format_bytes(p.memory_bytes), p.link.to_string()});
  }
  for (size_t i = 0; i < amd_gpus.size(); ++i) {
    const DeviceProperties p = amd::device_properties(amd_gpus[i], static_cast<int>(i));
    rows.push_back({p.name, p.kind, p.arch, format_bytes(p.memory_bytes),
                    p.link.to_string() + "  " + amd_gpus[i].product + " at " +
                        amd_gpus[i].pci_address});
  }
  print_table(rows, std::cout);
  if (host.memory_bytes > 0 && memory_bytes * devices.size() > host.memory_bytes) {
    std::cout << "note: " << devices.size() << " x " << format_bytes(memory_bytes)
              << " is more than the host's memory; lower --memory or --cpu-devices\n";
  }
  return 0;
}

}  // namespace

void register_devices(CLI::App& app, CommandTable& table) {
  auto options = std::make_shared<DevicesOptions>();
  CLI::App* sub = app.add_subcommand(
      "devices", "List the devices this host offers: cpu virtual GPUs carved from the CPU, and AMD GPUs "
      "found in KFD's topology");
  sub->add_option("--cpu-devices", options->cpu_devices,
                  "cpu virtual GPUs to open (default: one per CPU core this process may use)")
      ->check(CLI::Range(1, 4096));
  sub->add_option("--memory", options->memory,
                  "memory budget of each cpu virtual GPU, e.g. 2GiB, 512MiB (default: 2GiB, "
                  "the recipe's devices.memory default)");
  sub->add_flag("--json", options->json, "print one JSON object per device and line");
  sub->add_option("--sysfs", options->sysfs,
                  "sysfs root where AMD GPUs are looked up in KFD's topology (default: /sys)");
  table.entries.emplace_back(sub, [options] { return run_devices(*options); });
}

}  // namespace petaring::cli
