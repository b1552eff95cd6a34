// Wire format v2 on the node (PROTOCOL.md sections 9-11): the node's ECDSA P-256 identity,
// signed sessions, AES-256-GCM data messages and verification of signed commands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <mbedtls/pk.h>

#include "telemetry.h"

namespace iotshield {

class Identity {
 public:
  Identity();
  ~Identity();
  Identity(const Identity&) = delete;
  Identity& operator=(const Identity&) = delete;

  int generate(MbedRng rng, void* rng_ctx);  // a new P-256 key pair
  int load_pem(const std::string& pem, MbedRng rng, void* rng_ctx);
  std::string private_pem();
  std::string public_der_b64();  // the announced `node_key`
  // ECDSA-SHA256 signature, DER-encoded; 0 on success.
  int sign(const std::string& data, MbedRng rng, void* rng_ctx, std::string& der);

 private:
  mbedtls_pk_context pk_;
  bool ready_ = false;
};

class SessionSender {
 public:
  // Opens session `sid`: a fresh AES-256 key wrapped for Home Assistant and signed.
  int open(const std::string& node_id, uint32_t sid, Sealer& ha, Identity& identity,
           MbedRng rng, void* rng_ctx, std::string& message);
  // Encrypts one telemetry plaintext as the session's next data message.
  int seal(const std::string& node_id, const std::string& plaintext, std::string& message);
  uint32_t sid() const { return sid_; }
  uint32_t ctr() const { return ctr_; }

 private:
  uint32_t sid_ = 0;
  uint32_t ctr_ = 0;
  unsigned char key_[32] = {0};
};

struct Command {
  std::string node;
  uint64_t ctr = 0;
  std::string cmd;
  long interval = 0;      // set_interval
  double epsilon = -1.0;  // set_epsilon
  std::string key;        // set_ha_key: base64 DER SubjectPublicKeyInfo
};

enum class CommandVerdict { kOk, kUnreadable, kBadSignature, kOtherNode, kReplayed };

// Checks a command message against Home Assistant's key, this node's id and the last accepted
// counter; fills `out` only when the verdict is kOk.
CommandVerdict verify_command(const std::string& message, Sealer& ha, const std::string& node_id,
                              uint64_t last_ctr, Command& out);

std::string base64_encode(const unsigned char* data, size_t len);
bool base64_decode(const std::string& text, std::string& out);

}  // namespace iotshield
