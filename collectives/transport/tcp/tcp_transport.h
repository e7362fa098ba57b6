// TCP transport: one TCP connection per direction between each pair of ranks (set up with
// Boost.Asio), whose bytes are moved by the thread that waits for them.
//
// Start-up: each rank listens on an ephemeral port and publishes "ip:port" in the store
// under "tcp/<rank>" (its host name under "tcp/host/<rank>", for errors naming a peer:
// "rank 1 (at 10.0.0.2:4000 on host node7)"); the lower rank of each pair connects and
// sends a hello naming its rank and the connection's direction, the higher rank accepts.
// Sockets use TCP_NODELAY and large kernel buffers. Each direction has a connection of its
// own (socket_per_direction): a rank that sends and receives at once on one socket
// contends with its peer for the socket's lock, and the kernel then defers the received
// segments to whichever side holds it (2 ranks over loopback, 16 MiB allreduce: median
// 5727 against 5911 µs, docs/benchmarks.md).
//
// Wire: every message is one frame, [u64 tag][u64 bytes][payload]. A frame whose receive
// is already posted lands in the caller's buffer directly, others are buffered until their
// receive is posted. Sends are written in isend order per peer.
//
// Progress: isend writes what the socket takes at once (non-blocking). A thread in wait()
// reads and writes every peer's socket without blocking (so a ring step's send and receive
// progress together even when both sides send large messages at once) and, when nothing
// moves, blocks in poll(2) on the sockets itself: the bytes reach the waiting thread with
// no hand-off to or from another thread. One thread polls at a time; others wait on a
// condition variable for it. An I/O thread takes over the sockets only once no caller has
// waited for 2 ms, so that transfers go on while the caller computes; a caller that starts
// waiting wakes it out of its poll (eventfd) and takes over. Every socket call is made
// under the transport's mutex.
//
// Errors: a peer whose connection closes or fails (its process exited or was killed)
// turns every pending and later request with it into kDisconnected naming the peer's
// rank and address; messages that had fully arrived before stay receivable. Once a peer
// has failed, a wait on another peer that sees no progress for 1 s also throws
// kDisconnected naming the failed peer (the group cannot finish a collective). A wait with
// no bytes moving to or from the peer for its timeout throws kTimeout naming the peer. A
// receive whose size differs from the matching send gets kFailedPrecondition.
//
// Threads: any threads (one mutex guards the state shared with the internal I/O thread).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "collectives/store/store.h"
#include "collectives/transport.h"

namespace petaring {

struct TcpTransportOptions {
  std::string advertise_host = "127.0.0.1";  // the address other ranks connect to
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(120)};  // whole start-up
  int socket_buffer_bytes = 4 << 20;  // SO_SNDBUF and SO_RCVBUF
  // Two connections per pair, one for each direction; false: one connection both ways
  // (half the file descriptors, for very large groups). Every rank must pass the same.
  bool socket_per_direction = true;
  // A wait moves bytes without blocking for this long before it sleeps in poll(2): a
  // reply that comes within it costs no sleep and wake-up. 0 when ranks outnumber cores
  // (a spinning rank would take the core from the one it waits for).
  std::chrono::microseconds spin{50};
};

// Connects rank `rank` of `size` to every other rank through `store` (used during this
// call only; every rank must use the same store and a fresh key space). Throws kTimeout
// naming the missing rank when a peer does not show up within connect_timeout.
std::unique_ptr<Transport> make_tcp_transport(Store& store, int rank, int size,
                                              const TcpTransportOptions& options = {});

}  // namespace petaring
