#include "device/amd/topology.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "runtime/error.h"

namespace petaring::amd {
namespace {

constexpr const char* kTopologyNodes = "/devices/virtual/kfd/kfd/topology/nodes";
constexpr int kHeapFrameBufferPublic = 1;
constexpr int kHeapFrameBufferPrivate = 2;

struct KnownProduct {
  uint32_t device_id;
  const char* name;
};
constexpr KnownProduct kProducts[] = {
    {0x744c, "Radeon RX 7900 XTX/XT"}, {0x7448, "Radeon PRO W7900"},
    {0x747e, "Radeon RX 7800 XT"},     {0x7550, "Radeon RX 9070 XT/9070"},
    {0x7551, "Radeon AI PRO R9700"},   {0x74a1, "Instinct MI300X"},
};

std::string product_name(uint32_t device_id) {
  for (const KnownProduct& p : kProducts) {
    if (p.device_id == device_id) return p.name;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "AMD GPU 0x%04x", device_id);
  return text;
}

bool is_number(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
}

uint64_t require(const std::map<std::string, uint64_t>& props, const char* key,
                 const std::string& file) {
  auto it = props.find(key);
  if (it == props.end()) {
    PR_FAIL(kInvalidArgument, file, ": no '", key,
            "' line; is this a KFD topology properties file? (kernel too old for amdgpu KFD?)");
  }
  return it->second;
}

std::string trim(const std::string& text) {
  size_t start = text.find_first_not_of(" \t\n");
  size_t end = text.find_last_not_of(" \t\n");
  return start == std::string::npos ? "" : text.substr(start, end - start + 1);
}

uint64_t vram_bytes(SysInterface& sys, const std::string& node_dir) {
  uint64_t total = 0;
  for (const std::string& bank : sys.list_dir(node_dir + "/mem_banks")) {
    std::string text;
    if (!sys.read_file(node_dir + "/mem_banks/" + bank + "/properties", &text)) continue;
    auto props = parse_properties(text);
    const auto heap = static_cast<int>(props["heap_type"]);
    if (heap == kHeapFrameBufferPublic || heap == kHeapFrameBufferPrivate) {
      total += props["size_in_bytes"];
    }
  }
  return total;
}

// The PCIe link of the GPU's function; Link{kPcie} with width 0 when sysfs has no answer.
Link pcie_link(SysInterface& sys, const std::string& sysfs_root, const std::string& address) {
  Link link;
  link.kind = LinkKind::kPcie;
  const std::string dir = sysfs_root + "/bus/pci/devices/" + address;
  std::string speed_text, width_text;
  if (!sys.read_file(dir + "/current_link_speed", &speed_text) ||
      !sys.read_file(dir + "/current_link_width", &width_text)) {
    return link;
  }
  double speed = 0;
  int width = 0;
  if (std::sscanf(speed_text.c_str(), "%lf", &speed) != 1 ||
      std::sscanf(width_text.c_str(), "%d", &width) != 1) {
    return link;
  }
  link.pcie_gen = pcie_generation(speed);
  link.pcie_width = width;
  // Usable bytes per lane and direction after line coding (8b/10b up to gen 2, 128b/130b after).
  static constexpr double kLaneGBps[] = {0, 0.25, 0.5, 0.985, 1.969, 3.938, 7.877};
  if (link.pcie_gen > 0) link.bandwidth_gbps = kLaneGBps[link.pcie_gen] * width;
  return link;
}

}  // namespace

std::map<std::string, uint64_t> parse_properties(const std::string& text) {
  std::map<std::string, uint64_t> props;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    uint64_t value = 0;
    if (fields >> key >> value) props[key] = value;
  }
  return props;
}

DeviceProperties device_properties(const AmdGpuInfo& gpu, int index) {
  DeviceProperties p;
  p.name = str_cat("amd:", index);
  p.kind = "amd";
  p.arch = gpu.arch;
  p.index = index;
  p.memory_bytes = gpu.vram_bytes;
  p.link = gpu.link;
  return p;
}

std::string gfx_arch_name(uint32_t version) {
  char text[32];
  std::snprintf(text, sizeof(text), "gfx%u%x%x", version / 10000, (version / 100) % 100,
                version % 100);
  return text;
}

int pcie_generation(double gt) {
  if (gt < 2.0) return 0;
  if (gt < 4.0) return 1;
  if (gt < 7.0) return 2;
  if (gt < 12.0) return 3;
  if (gt < 24.0) return 4;
  if (gt < 48.0) return 5;
  if (gt < 96.0) return 6;
  return 0;
}

std::vector<AmdGpuInfo> discover_amd_gpus(SysInterface& sys, const std::string& sysfs_root) {
  const std::string nodes_dir = sysfs_root + kTopologyNodes;
  std::vector<std::string> names = sys.list_dir(nodes_dir);
  names.erase(std::remove_if(names.begin(), names.end(), [](auto& n) { return !is_number(n); }),
              names.end());
  std::sort(names.begin(), names.end(),
            [](const std::string& a, const std::string& b) { return std::stoi(a) < std::stoi(b); });
  std::vector<AmdGpuInfo> gpus;
  for (const std::string& name : names) {
    const std::string node_dir = nodes_dir + "/" + name;
    std::string gpu_id_text, props_text;
    if (!sys.read_file(node_dir + "/gpu_id", &gpu_id_text)) continue;
    const uint64_t gpu_id = std::strtoull(trim(gpu_id_text).c_str(), nullptr, 10);
    if (gpu_id == 0) continue;  // a CPU node
    const std::string props_file = node_dir + "/properties";
    if (!sys.read_file(props_file, &props_text)) {
      PR_FAIL(kInvalidArgument, props_file, ": cannot be read although ", node_dir,
              "/gpu_id names GPU ", gpu_id);
    }
    const auto props = parse_properties(props_text);
    AmdGpuInfo gpu;
    gpu.node = std::stoi(name);
    gpu.gpu_id = static_cast<uint32_t>(gpu_id);
    gpu.gfx_target_version =
        static_cast<uint32_t>(require(props, "gfx_target_version", props_file));
    gpu.arch = gfx_arch_name(gpu.gfx_target_version);
    gpu.vendor_id = static_cast<uint32_t>(require(props, "vendor_id", props_file));
    gpu.device_id = static_cast<uint32_t>(require(props, "device_id", props_file));
    gpu.product = product_name(gpu.device_id);
    gpu.render_minor = static_cast<int>(require(props, "drm_render_minor", props_file));
    auto optional = [&](const char* key, uint64_t fallback) {
      return static_cast<int>(props.count(key) ? props.at(key) : fallback);
    };
    gpu.simd_count = optional("simd_count", 0);
    gpu.simd_per_cu = optional("simd_per_cu", 0);
    gpu.max_waves_per_simd = optional("max_waves_per_simd", 0);
    gpu.num_xcc = std::max(1, optional("num_xcc", 1));
    gpu.max_slots_scratch_cu = optional("max_slots_scratch_cu", 0);
    gpu.array_count = optional("array_count", 0);
    gpu.simd_arrays_per_engine = optional("simd_arrays_per_engine", 0);
    gpu.vram_bytes = vram_bytes(sys, node_dir);
    if (gpu.vram_bytes == 0 && props.count("local_mem_size")) {
      gpu.vram_bytes = props.at("local_mem_size");
    }
    const uint64_t location = require(props, "location_id", props_file);
    const uint64_t domain = props.count("domain") ? props.at("domain") : 0;
    char address[32];
    std::snprintf(address, sizeof(address), "%04x:%02x:%02x.%x", static_cast<unsigned>(domain),
                  static_cast<unsigned>((location >> 8) & 0xff),
                  static_cast<unsigned>((location >> 3) & 0x1f),
                  static_cast<unsigned>(location & 0x7));
    gpu.pci_address = address;
    gpu.link = pcie_link(sys, sysfs_root, gpu.pci_address);
    gpus.push_back(std::move(gpu));
  }
  return gpus;
}

}  // namespace petaring::amd
