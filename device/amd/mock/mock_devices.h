// AMD devices over the mock KFD, for tests and for trying the amd backend without a GPU:
// the GPUs of a sysfs fixture tree (tests/fixtures/amd/<box>/sys), each an AmdDevice
// whose dispatches run the CPU twins of the kernels (mock_kernels.h). Nothing here
// touches a GPU. `petaring train` uses it when PETARING_AMD_MOCK_SYSFS names such a tree
// and the recipe says `devices: {kind: amd}`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "device/amd/amd_device.h"
#include "device/amd/mock/mock_kernels.h"
#include "device/amd/mock/mock_kfd.h"

namespace petaring::amd {

inline constexpr const char* kMockSysfsVariable = "PETARING_AMD_MOCK_SYSFS";

// Throws kNotFound when the code objects were not built or the tree has no GPU.
std::vector<std::unique_ptr<Device>> open_mock_amd_devices(const std::string& sysfs_root,
                                                           AmdDeviceOptions options = {},
                                                           MockKfdOptions kfd_options = {},
                                                           int only = -1,
                                                           MockKernels kernels =
                                                               MockKernels::kCpuBackend);

}  // namespace petaring::amd
