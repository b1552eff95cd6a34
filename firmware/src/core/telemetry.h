// Telemetry encoding, announce and the v1 envelope (PROTOCOL.md sections 2-5) with mbedTLS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <mbedtls/pk.h>

#include "privacy.h"
#include "readings.h"

namespace iotshield {

// The compact plaintext JSON, byte for byte as the Python reference node writes it.
std::string encode_telemetry(const std::string& node_id, uint32_t seq, uint32_t timestamp,
                             const Readings& readings, const PrivacyConfig* privacy);

// The announce of section 5; a non-empty `node_key` marks a v2 node of revision 1 (sections 9
// and 12), which this firmware's v2 nodes all are.
std::string announce_json(const std::string& node_id, const std::string& firmware,
                          uint32_t interval, const PrivacyConfig* privacy,
                          const std::string& key_fingerprint, const std::string& node_key = "");

// Lowercase hexadecimal digits of `len` bytes (fingerprints, will hashes, session tags).
std::string hex_digits(const unsigned char* data, size_t len);

// mbedTLS-style RNG callback used for OAEP padding.
using MbedRng = int (*)(void*, unsigned char*, size_t);

class Sealer {
 public:
  Sealer();
  ~Sealer();
  Sealer(const Sealer&) = delete;
  Sealer& operator=(const Sealer&) = delete;

  // Loads Home Assistant's public key (PEM SubjectPublicKeyInfo); 0 on success.
  int load_public_key(const std::string& pem);
  // SHA-256 over the DER SubjectPublicKeyInfo as 64 hex digits (section 2).
  std::string fingerprint() const;
  // RSA-OAEP/SHA-256 encrypts and frames as {"v":1,"ct":"..."}; 0 on success.
  int seal_v1(const std::string& plaintext, MbedRng rng, void* rng_ctx, std::string& envelope);
  size_t max_plaintext() const;
  // Raw RSA-OAEP/SHA-256 encryption to Home Assistant's key (v2 session keys); 0 on success.
  int encrypt(const std::string& plaintext, MbedRng rng, void* rng_ctx, std::string& ciphertext);
  // RSASSA-PSS/SHA-256 verification with Home Assistant's key (v2 commands); 0 when valid.
  int verify_pss(const std::string& data, const std::string& signature);

 private:
  mbedtls_pk_context pk_;
  bool loaded_ = false;
};

}  // namespace iotshield
