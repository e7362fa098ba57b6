// PrefixStore: a view of another store whose keys all start with a prefix, so that
// several groups (the shared-memory transport of each host) can meet through one store
// without their keys colliding.
#pragma once

#include <string>

#include "collectives/store/store.h"

namespace petaring {

class PrefixStore : public Store {
 public:
  // `base` must outlive this view.
  PrefixStore(Store& base, std::string prefix) : base_(base), prefix_(std::move(prefix)) {}
  void set(const std::string& key, const std::string& value) override {
    base_.set(prefix_ + key, value);
  }
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override {
    return base_.get(prefix_ + key, timeout);
  }
  int64_t add(const std::string& key, int64_t delta) override {
    return base_.add(prefix_ + key, delta);
  }
  std::string local_ip() const override { return base_.local_ip(); }

 private:
  Store& base_;
  std::string prefix_;
};

}  // namespace petaring
