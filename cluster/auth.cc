#include "cluster/auth.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <fstream>
#include <sstream>

#include "runtime/error.h"

namespace petaring::cluster {

std::string read_secret_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    PR_FAIL(kNotFound, "cannot read the pool secret file '", path,
            "'; create one (e.g. head -c 32 /dev/urandom | base64 > ", path,
            ") and give the same file to the coordinator, every worker and every client");
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string secret = text.str();
  size_t begin = secret.find_first_not_of(" \t\r\n");
  size_t end = secret.find_last_not_of(" \t\r\n");
  secret = begin == std::string::npos ? "" : secret.substr(begin, end - begin + 1);
  if (secret.size() < kMinSecretBytes) {
    PR_FAIL(kInvalidArgument, "pool secret file '", path, "' holds ", secret.size(),
            " bytes; it needs at least ", kMinSecretBytes,
            " (e.g. head -c 32 /dev/urandom | base64 > ", path, ")");
  }
  return secret;
}

std::string hmac_sha256(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  unsigned char* result =
      HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &length);
  if (result == nullptr) PR_FAIL(kInternal, "OpenSSL HMAC-SHA256 failed");
  return std::string(reinterpret_cast<char*>(out), length);
}

std::string random_bytes(size_t count) {
  std::string bytes(count, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(count)) != 1) {
    PR_FAIL(kInternal, "OpenSSL RAND_bytes failed to give ", count, " random bytes");
  }
  return bytes;
}

bool equal_in_constant_time(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string job_token(const std::string& secret, int64_t job_id, uint32_t attempt) {
  return hmac_sha256(secret, str_cat("petaring-pool-job-token|", job_id, "|", attempt));
}

std::string rank_name(int64_t job_id, uint32_t attempt) { return str_cat(job_id, ".", attempt); }

bool parse_rank_name(const std::string& name, int64_t* job_id, uint32_t* attempt) {
  size_t dot = name.find('.');
  if (dot == std::string::npos || dot == 0 || dot > 18 || dot + 1 == name.size() ||
      name.size() - dot - 1 > 9) {
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    if (i != dot && (name[i] < '0' || name[i] > '9')) return false;
  }
  *job_id = std::stoll(name.substr(0, dot));
  unsigned long value = std::stoul(name.substr(dot + 1));
  if (value > UINT32_MAX) return false;
  *attempt = static_cast<uint32_t>(value);
  return true;
}

std::string hello_mac(const std::string& key, wire::Role role, const std::string& name,
                      const std::string& server_nonce) {
  return hmac_sha256(key, str_cat("petaring-pool-hello|", static_cast<int>(role), "|", name.size(),
                                  ":", name, "|", server_nonce));
}

std::string welcome_mac(const std::string& key, const std::string& client_nonce) {
  return hmac_sha256(key, str_cat("petaring-pool-welcome|", client_nonce));
}

}  // namespace petaring::cluster
