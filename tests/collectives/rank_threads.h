// Test helpers: ranks as threads over the in-process transport. Header-only: the
// layer's test program is built from *_test.cc files alone.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/transport/local/local_transport.h"
#include "runtime/error.h"

namespace petaring::testing_ranks {

// Runs fn(rank's communicator slot) on one thread per transport of `transports` (element i
// being rank i), each wrapped in a Communicator with `timeout`; returns each rank's
// exception (or null). Every communicator lives until every rank has finished, so that a
// rank's peers see its error, not its exit; fn may reset its slot to close it early. Ranks
// listed in `absent` never run.
inline std::vector<std::exception_ptr> run_group(
    std::vector<std::unique_ptr<Transport>> transports,
    const std::function<void(std::unique_ptr<Communicator>&)>& fn,
    std::chrono::milliseconds timeout = std::chrono::seconds(20), std::vector<int> absent = {}) {
  const int size = static_cast<int>(transports.size());
  std::vector<std::unique_ptr<Communicator>> comms;
  for (auto& transport : transports) {
    comms.push_back(std::make_unique<Communicator>(std::move(transport)));
    comms.back()->set_timeout(timeout);
  }
  std::vector<std::exception_ptr> errors(size);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    if (std::find(absent.begin(), absent.end(), rank) != absent.end()) continue;
    threads.emplace_back([&, rank] {
      try {
        fn(comms[rank]);
      } catch (...) {
        errors[rank] = std::current_exception();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  return errors;
}

// run_group over a fresh local group of `size`, fn taking the rank's communicator.
inline std::vector<std::exception_ptr> run_ranks(
    int size, const std::function<void(Communicator&)>& fn,
    std::chrono::milliseconds timeout = std::chrono::seconds(20), std::vector<int> absent = {}) {
  return run_group(make_local_transports(size),
                   [&](std::unique_ptr<Communicator>& comm) { fn(*comm); }, timeout,
                   std::move(absent));
}

// Fails the current test for every rank that threw, with its message.
inline void expect_no_errors(const std::vector<std::exception_ptr>& errors) {
  for (size_t rank = 0; rank < errors.size(); ++rank) {
    if (!errors[rank]) continue;
    try {
      std::rethrow_exception(errors[rank]);
    } catch (const std::exception& error) {
      ADD_FAILURE() << "rank " << rank << " failed: " << error.what();
    }
  }
}

// The Error a rank threw; an Error of kind kInternal "no error" when it threw none.
inline Error error_of(const std::exception_ptr& thrown) {
  if (!thrown) return Error(ErrorKind::kInternal, "no error");
  try {
    std::rethrow_exception(thrown);
  } catch (const Error& error) {
    return error;
  } catch (const std::exception& other) {
    return Error(ErrorKind::kInternal, other.what());
  }
}

}  // namespace petaring::testing_ranks
