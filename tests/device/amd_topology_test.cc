// Discovery from KFD's sysfs topology, over the fixture trees in tests/fixtures/amd.
#include <gtest/gtest.h>

#include <string>

#include "device/amd/sys.h"
#include "device/amd/topology.h"
#include "runtime/error.h"

namespace petaring::amd {
namespace {

std::string fixture(const std::string& box) {
  return std::string(PETARING_SOURCE_DIR) + "/tests/fixtures/amd/" + box + "/sys";
}

TEST(AmdTopologyTest, FindsTheOne7900XtxAndSkipsTheCpuNode) {
  auto sys = make_real_sys();
  const auto gpus = discover_amd_gpus(*sys, fixture("7900xtx"));
  ASSERT_EQ(gpus.size(), 1u);
  const AmdGpuInfo& gpu = gpus[0];
  EXPECT_EQ(gpu.node, 1);
  EXPECT_EQ(gpu.gpu_id, 48467u);
  EXPECT_EQ(gpu.gfx_target_version, 110000u);
  EXPECT_EQ(gpu.arch, "gfx1100");
  EXPECT_EQ(gpu.device_id, 0x744cu);
  EXPECT_EQ(gpu.vendor_id, 0x1002u);
  EXPECT_EQ(gpu.product, "Radeon RX 7900 XTX/XT");
  EXPECT_EQ(gpu.vram_bytes, 25753026560ull);
  EXPECT_EQ(gpu.render_minor, 128);
  EXPECT_EQ(gpu.render_node(), "/dev/dri/renderD128");
  EXPECT_EQ(gpu.simd_count, 192);
  EXPECT_EQ(gpu.pci_address, "0000:03:00.0");
  EXPECT_EQ(gpu.link.kind, LinkKind::kPcie);
  EXPECT_EQ(gpu.link.pcie_gen, 4);
  EXPECT_EQ(gpu.link.pcie_width, 16);
  EXPECT_EQ(gpu.link.to_string(), "PCIe 4.0 x16 (31.5 GB/s)");
  const DeviceProperties p = device_properties(gpu, 0);
  EXPECT_EQ(p.name, "amd:0");
  EXPECT_EQ(p.kind, "amd");
  EXPECT_EQ(p.arch, "gfx1100");
  EXPECT_EQ(p.memory_bytes, 25753026560ull);
}

TEST(AmdTopologyTest, SixGpuBoxInNodeOrderWithEachLink) {
  auto sys = make_real_sys();
  const auto gpus = discover_amd_gpus(*sys, fixture("six_gpu"));
  ASSERT_EQ(gpus.size(), 6u);
  const int widths[] = {16, 8, 8, 4, 1, 16};
  const int gens[] = {4, 4, 4, 3, 1, 4};
  for (size_t i = 0; i < gpus.size(); ++i) {
    EXPECT_EQ(gpus[i].node, static_cast<int>(i) + 1);
    EXPECT_EQ(gpus[i].render_minor, 128 + static_cast<int>(i));
    EXPECT_EQ(gpus[i].link.pcie_width, widths[i]) << i;
    EXPECT_EQ(gpus[i].link.pcie_gen, gens[i]) << i;
  }
  EXPECT_EQ(gpus[3].pci_address, "0000:0f:00.0");
  EXPECT_EQ(gpus[4].link.to_string(), "PCIe 1.0 x1 (0.2 GB/s)");
  EXPECT_EQ(gpus[5].arch, "gfx1201");
  EXPECT_EQ(gpus[5].product, "Radeon RX 9070 XT/9070");
  EXPECT_EQ(gpus[5].vram_bytes, 17163091968ull);
}

TEST(AmdTopologyTest, NoKfdMeansNoGpus) {
  auto sys = make_real_sys();
  EXPECT_TRUE(discover_amd_gpus(*sys, fixture("no_such_box")).empty());
}

TEST(AmdTopologyTest, ArchNamesFollowTheGfxTargetVersion) {
  EXPECT_EQ(gfx_arch_name(110000), "gfx1100");
  EXPECT_EQ(gfx_arch_name(110001), "gfx1101");
  EXPECT_EQ(gfx_arch_name(120001), "gfx1201");
  EXPECT_EQ(gfx_arch_name(90010), "gfx90a");
  EXPECT_EQ(gfx_arch_name(90402), "gfx942");
  EXPECT_EQ(pcie_generation(2.5), 1);
  EXPECT_EQ(pcie_generation(32.0), 5);
  EXPECT_EQ(pcie_generation(0.0), 0);
}

TEST(AmdTopologyTest, PropertiesParseKeyValueLinesAndSkipJunk) {
  const auto props = parse_properties("simd_count 192\nnot a number\n\ngpu_x 7\n");
  EXPECT_EQ(props.size(), 2u);
  EXPECT_EQ(props.at("simd_count"), 192u);
  EXPECT_EQ(props.at("gpu_x"), 7u);
}

}  // namespace
}  // namespace petaring::amd
