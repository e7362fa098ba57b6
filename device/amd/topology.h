// Discovery of AMD GPUs from the KFD topology in sysfs.
//
// KFD describes every node (CPU or GPU) under
//   <sysfs>/devices/virtual/kfd/kfd/topology/nodes/<N>/
//     gpu_id                 0 for CPU nodes (skipped), else the id ioctls take
//     properties             "key value" lines: gfx_target_version, drm_render_minor,
//                            simd_count, vendor_id, device_id, domain, location_id, ...
//     mem_banks/<M>/properties   heap_type (1 = VRAM public, 2 = VRAM private), size_in_bytes
// and the PCIe link of the GPU's function under
//   <sysfs>/bus/pci/devices/<domain>:<bus>:<dev>.<fn>/current_link_speed ("16.0 GT/s PCIe")
//                                                    /current_link_width ("16")
// `sysfs_root` is "/sys" on a real host and a fixture tree in tests
// (tests/fixtures/amd/<box>/sys). Every read goes through the SysInterface.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "device/amd/sys.h"
#include "device/device.h"

namespace petaring::amd {

inline constexpr const char* kSysfsRoot = "/sys";

struct AmdGpuInfo {
  int node = 0;                    // KFD topology node number
  uint32_t gpu_id = 0;             // KFD's id for ioctls
  uint32_t gfx_target_version = 0; // 110000
  std::string arch;                // "gfx1100"
  std::string product;             // "Radeon RX 7900 XTX", or "AMD GPU 0x<device_id>"
  uint32_t vendor_id = 0;          // 0x1002
  uint32_t device_id = 0;          // 0x744c
  uint64_t vram_bytes = 0;         // sum of the frame-buffer memory banks
  int render_minor = 0;            // /dev/dri/renderD<render_minor>
  int simd_count = 0;
  int simd_per_cu = 0;             // 0 when the topology does not say
  int max_waves_per_simd = 0;
  int num_xcc = 1;                 // compute dies (1 on RDNA)
  int max_slots_scratch_cu = 0;    // scratch wave slots per CU
  int array_count = 0;             // shader arrays
  int simd_arrays_per_engine = 0;  // shader arrays per shader engine
  std::string pci_address;         // "0000:03:00.0"
  Link link;                       // kPcie with generation and width; width 0 = unknown

  std::string render_node() const { return "/dev/dri/renderD" + std::to_string(render_minor); }
};

// The GPU nodes of the topology in node order; empty when KFD is absent (no such folder).
// Throws kInvalidArgument naming the file when a GPU node's properties cannot be parsed.
std::vector<AmdGpuInfo> discover_amd_gpus(SysInterface& sys,
                                          const std::string& sysfs_root = kSysfsRoot);

// What the Device interface says about the GPU: "amd:<index>", kind "amd", its arch,
// VRAM and PCIe link.
DeviceProperties device_properties(const AmdGpuInfo& gpu, int index);

// "gfx1100" for 110000, "gfx90a" for 90010, "gfx942" for 90402.
std::string gfx_arch_name(uint32_t gfx_target_version);

// The "key value" lines of a sysfs properties file.
std::map<std::string, uint64_t> parse_properties(const std::string& text);

// PCIe generation for a link speed in GT/s (2.5 -> 1, ..., 32 -> 5); 0 when unknown.
int pcie_generation(double gigatransfers);

}  // namespace petaring::amd
