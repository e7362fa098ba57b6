// Authentication of pool connections: HMAC-SHA256 challenge-response (OpenSSL).
//
// Every pool member holds the pool secret, read from a file given at start (--secret-file;
// any bytes, at least 16, surrounding whitespace ignored). On every connection:
//   1. the server sends a fresh 32-byte nonce (Challenge);
//   2. the peer answers Hello{role, name, clientNonce, mac}, where
//      mac = HMAC-SHA256(key, "petaring-pool-hello" | role | name | nonce);
//   3. the server checks the mac in constant time and answers
//      Welcome{HMAC-SHA256(key, "petaring-pool-welcome" | clientNonce)}, so the peer
//      knows it reached a server holding the same key; or it closes the connection.
// The key is the pool secret for workers and clients. A rank of a job holds only that
// job attempt's token, job_token(secret, job, attempt), and uses it as the key; its name
// is "JOB.ATTEMPT". So a rank can join its own job and nothing else, and never learns the
// pool secret. The secret never crosses the wire. No encryption: the pool's traffic is
// authenticated, not private (TLS would be the next step).
#pragma once

#include <cstdint>
#include <string>

#include "cluster/pool.capnp.h"

namespace petaring::cluster {

inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kMinSecretBytes = 16;

// Reads the pool secret; throws kNotFound (missing file), kInvalidArgument (shorter than
// kMinSecretBytes) naming the file and what to do.
std::string read_secret_file(const std::string& path);

std::string hmac_sha256(const std::string& key, const std::string& data);
// Cryptographically random bytes (RAND_bytes).
std::string random_bytes(size_t count);
// Constant-time comparison of two byte strings.
bool equal_in_constant_time(const std::string& a, const std::string& b);

// The key a rank of attempt `attempt` of job `job_id` proves itself with.
std::string job_token(const std::string& secret, int64_t job_id, uint32_t attempt);
// "JOB.ATTEMPT", the name a rank gives in Hello; parse_rank_name returns false when
// `name` is not of that form.
std::string rank_name(int64_t job_id, uint32_t attempt);
bool parse_rank_name(const std::string& name, int64_t* job_id, uint32_t* attempt);

std::string hello_mac(const std::string& key, wire::Role role, const std::string& name,
                      const std::string& server_nonce);
std::string welcome_mac(const std::string& key, const std::string& client_nonce);

}  // namespace petaring::cluster
