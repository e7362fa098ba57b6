#include "collectives/store/file_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "runtime/error.h"

namespace petaring {
namespace {

// A process-wide counter that makes temporary file names unique among threads.
std::atomic<uint64_t> temporary_counter{0};

}  // namespace

FileStore::FileStore(std::string folder) : folder_(std::move(folder)) {
  std::error_code error;
  std::filesystem::create_directories(folder_, error);
  if (error) {
    PR_FAIL(kPermissionDenied, "cannot create the store folder ", folder_, ": ",
            error.message());
  }
}

std::string FileStore::path_of(const std::string& key) const {
  // Letters, digits, '-' and '_' stay; every other byte becomes %XX.
  std::string name = "k_";
  const char* hex = "0123456789abcdef";
  for (unsigned char c : key) {
    if (std::isalnum(c) || c == '-' || c == '_') {
      name += static_cast<char>(c);
    } else {
      name += '%';
      name += hex[c >> 4];
      name += hex[c & 15];
    }
  }
  return folder_ + "/" + name;
}

bool FileStore::try_read(const std::string& key, std::string* value) const {
  std::ifstream in(path_of(key), std::ios::binary);
  if (!in) return false;
  std::ostringstream contents;
  contents << in.rdbuf();
  *value = contents.str();
  return true;
}

void FileStore::set(const std::string& key, const std::string& value) {
  std::string path = path_of(key);
  std::string temporary = str_cat(folder_, "/.tmp.", ::getpid(), ".", temporary_counter++);
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(value.data(), static_cast<std::streamsize>(value.size()));
    if (!out.flush()) PR_FAIL(kPermissionDenied, "cannot write ", temporary, " for key '", key, "'");
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    PR_FAIL(kPermissionDenied, "cannot rename ", temporary, " to ", path, " for key '", key, "'");
  }
}

std::string FileStore::get(const std::string& key, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string value;
  while (!try_read(key, &value)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      PR_FAIL(kTimeout, "key '", key, "' did not appear in the file store ", folder_, " within ",
              timeout.count(), " ms; did every rank start?");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return value;
}

int64_t FileStore::add(const std::string& key, int64_t delta) {
  std::string lock_path = folder_ + "/.lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) PR_FAIL(kPermissionDenied, "cannot open the store lock file ", lock_path);
  ::flock(fd, LOCK_EX);
  int64_t value = delta;
  try {
    std::string current;
    if (try_read(key, &current)) {
      char* end = nullptr;
      long long parsed = std::strtoll(current.c_str(), &end, 10);
      if (current.empty() || *end != '\0') {
        PR_FAIL(kInvalidArgument, "key '", key, "' in the file store ", folder_,
                " does not hold a counter");
      }
      value = parsed + delta;
    }
    set(key, std::to_string(value));
  } catch (...) {
    ::close(fd);  // also releases the lock
    throw;
  }
  ::close(fd);
  return value;
}

}  // namespace petaring
