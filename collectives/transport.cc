#include "collectives/transport.h"

#include "runtime/error.h"

namespace petaring {

std::string transport_aborted_message(int rank, int peer, const char* transport_name) {
  return str_cat("rank ", rank, ": the communicator was aborted while an operation with rank ",
                 peer, " was pending (", transport_name,
                 " transport); look for the error that made this rank abort");
}

}  // namespace petaring
