// File store: each key is one file in a folder that every rank can reach (a local or
// shared file system); for tests and single-host jobs without a server.
//
// set writes the value to a temporary file and renames it over the key's file, so readers
// see a whole old or a whole new value, never a part. get polls the file. add holds an
// exclusive flock on the folder's lock file while it reads and rewrites the counter.
// Key names are escaped into file names, so any key is allowed.
#pragma once

#include <string>

#include "collectives/store/store.h"

namespace petaring {

class FileStore : public Store {
 public:
  // Creates `folder` (and its parents) when missing; throws kPermissionDenied naming it
  // when that fails.
  explicit FileStore(std::string folder);

  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override;
  int64_t add(const std::string& key, int64_t delta) override;

 private:
  std::string path_of(const std::string& key) const;
  bool try_read(const std::string& key, std::string* value) const;

  std::string folder_;
};

}  // namespace petaring
