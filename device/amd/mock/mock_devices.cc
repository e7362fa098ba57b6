#include "device/amd/mock/mock_devices.h"

#include "device/amd/mock/mock_kernels.h"
#include "runtime/error.h"

namespace petaring::amd {

std::vector<std::unique_ptr<Device>> open_mock_amd_devices(const std::string& sysfs_root,
                                                           AmdDeviceOptions options,
                                                           MockKfdOptions kfd_options,
                                                           int only, MockKernels kernels) {
  const std::string path =
      options.code_object_path.empty() ? default_code_object_path() : options.code_object_path;
  if (path.empty()) {
    PR_FAIL(kNotFound, "amd (mock KFD): the GPU code objects were not built: clang-16 and "
            "ld.lld-16 must be installed when the build is configured "
            "(scripts/install_deps.sh installs them)");
  }
  options.code_object_path = path;
  kfd_options.sysfs_root = sysfs_root;
  kfd_options.dispatch =
      make_mock_kernel_runner(
      std::make_shared<const CodeObject>(CodeObject::load_file(path)), kernels);
  auto kfd = std::make_shared<MockKfd>(std::move(kfd_options));
  return open_amd_devices(kfd, sysfs_root, options, only);
}

}  // namespace petaring::amd
