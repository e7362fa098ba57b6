// open_store(): the launcher's PETARING_STORE text to a Store (store.h).
#include <map>
#include <mutex>

#include "collectives/store/store.h"
#include "collectives/store/tcp_store.h"
#include "runtime/error.h"

namespace petaring {
namespace {

std::mutex& openers_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::map<std::string, StoreOpener>& openers() {
  static std::map<std::string, StoreOpener> table;
  return table;
}

}  // namespace

void register_store_scheme(const std::string& scheme, StoreOpener opener) {
  std::lock_guard<std::mutex> lock(openers_mutex());
  openers()[scheme] = std::move(opener);
}

std::unique_ptr<Store> open_store(const std::string& address) {
  size_t separator = address.find("://");
  if (separator == std::string::npos) return std::make_unique<TcpStore>(address);
  std::string scheme = address.substr(0, separator);
  StoreOpener opener;
  {
    std::lock_guard<std::mutex> lock(openers_mutex());
    auto found = openers().find(scheme);
    if (found != openers().end()) opener = found->second;
  }
  if (!opener) {
    PR_FAIL(kInvalidArgument, "the store address '", address, "' has the scheme '", scheme,
            "', which this program does not serve; use host:port for a TCP store");
  }
  return opener(address.substr(separator + 3));
}

}  // namespace petaring
