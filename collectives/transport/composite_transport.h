// Composite transport: one transport per kind of link, each peer routed to the first that
// fits (same host -> shared memory, else the network: TCP, or MPI under mpirun). The
// bootstrap builds it (bootstrap.h); collectives see one Transport.
//
// Terms: a part is a transport over a subset of the world's ranks (`ranks`, in the part's
// rank order; this rank among them); a route says, for each world peer, which part carries
// the pair's messages and the peer's rank in that part. Parts may also be kept without
// routes (an MPI transport that must live as long as the world, for MPI's own finalize).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "collectives/transport.h"

namespace petaring {

struct TransportPart {
  std::unique_ptr<Transport> transport;
  std::vector<int> ranks;  // world rank of each of the part's ranks
};

// `route[p]` is the index in `parts` of the part that carries messages to and from world
// rank p (p == rank: any part holding this rank; -1 is not allowed). `name` is what name()
// reports, e.g. "shm+tcp".
std::unique_ptr<Transport> make_composite_transport(int rank, int size,
                                                    std::vector<TransportPart> parts,
                                                    std::vector<int> route, std::string name);

}  // namespace petaring
