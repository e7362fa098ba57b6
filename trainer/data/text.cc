#include "trainer/data/text.h"

#include <fstream>
#include <iterator>

#include "runtime/error.h"

namespace petaring {

std::vector<uint16_t> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    PR_FAIL(kNotFound, "text file \"", path, "\" cannot be opened; check data.path (Debian's "
            "fortunes package installs text under /usr/share/games/fortunes)");
  }
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)),
                                         std::istreambuf_iterator<char>());
  if (in.bad()) PR_FAIL(kNotFound, "text file \"", path, "\" could not be read to its end");
  if (bytes.empty()) PR_FAIL(kInvalidArgument, "text file \"", path, "\" is empty");
  return std::vector<uint16_t>(bytes.begin(), bytes.end());
}

}  // namespace petaring
