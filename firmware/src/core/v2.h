// Wire format v2 on the node (PROTOCOL.md sections 9-12): the node's ECDSA P-256 identity,
// signed sessions carrying the node's settings (revision 1), constant-length AES-256-GCM data
// messages, the authenticated last will and verification of signed, session-bound commands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <mbedtls/pk.h>

#include "telemetry.h"

namespace iotshield {

// Section 12.4: every data plaintext of a session is padded to this many bytes by default.
constexpr size_t kDefaultPad = 256;
constexpr size_t kMinPad = 64;
constexpr size_t kMaxPad = 512;
// Section 12.1: a session message larger than this is refused by Home Assistant.
constexpr size_t kMaxSessionMessage = 2048;
// Section 12.3: the longest challenge a node carries into its sessions.
constexpr size_t kMaxChallenge = 64;

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
  // SHA-256 over the DER public key in hex: what the pairing wizard shows.
  std::string fingerprint();
  // ECDSA-SHA256 signature, DER-encoded; 0 on success.
  int sign(const std::string& data, MbedRng rng, void* rng_ctx, std::string& der);

 private:
  mbedtls_pk_context pk_;
  bool ready_ = false;
};

// The signed settings of a revision-1 session (section 12.1).
struct SessionInfo {
  std::string challenge;          // `ch` of the last accepted open_session, "" if none
  std::string firmware;           // 1 ... 32 characters
  uint32_t interval = 0;          // seconds, 1 ... 86400
  std::string privacy = "null";   // the announce's privacy JSON (section 5) or "null"
  std::string key_fp;             // fingerprint of the Home Assistant key `ek` is wrapped for
  std::string will;               // SHA-256 of the connection's will token, 64 lowercase hex
  size_t pad = kDefaultPad;       // data plaintext length, kMinPad ... kMaxPad
};

// The compact `info` JSON text of a session; "" when a member is outside section 12.1's
// ranges, so that a node never signs settings Home Assistant would refuse. A `challenge` that
// is not valid (is_challenge) is written as "".
std::string session_info_json(const SessionInfo& info);

// True for at most kMaxChallenge characters of canonical standard base64 (the empty string
// included): the only challenges a node repeats into the text it signs.
bool is_challenge(const std::string& text);

// Section 12.5: the first 16 bytes of SHA-256("iotshield-v2-command|" + key), 32 lowercase hex.
std::string session_tag(const unsigned char key[32]);

// The tags of the node's current and previous session; commands must name one of them.
// Only the tags are kept, so no retired session key stays in memory.
class SessionTags {
 public:
  // A new session was opened: its tag becomes current, the current one previous.
  void opened(const std::string& tag);
  bool names(const std::string& tag) const;

 private:
  std::string current_;
  std::string previous_;
};

class SessionSender {
 public:
  // Opens session `sid` of revision 1: a fresh AES-256 key wrapped for Home Assistant, sent
  // with `info` and signed. On failure the previous session stays as it was.
  int open(const std::string& node_id, uint32_t sid, const SessionInfo& info, Sealer& ha,
           Identity& identity, MbedRng rng, void* rng_ctx, std::string& message);
  // Pads one telemetry plaintext to the session's length and encrypts it as the session's next
  // data message; a plaintext longer than the pad is refused (non-zero), nothing is sent.
  int seal(const std::string& node_id, const std::string& plaintext, std::string& message);
  uint32_t sid() const { return sid_; }
  uint32_t ctr() const { return ctr_; }
  const SessionTags& tags() const { return tags_; }

 private:
  uint32_t sid_ = 0;
  uint32_t ctr_ = 0;
  size_t pad_ = kDefaultPad;
  unsigned char key_[32] = {0};
  SessionTags tags_;
};

// Section 12.2: the last will of one MQTT connection and the hash its sessions carry.
struct WillToken {
  std::string payload;  // {"state":"offline","node":...,"will":"<base64 of 16 bytes>"}
  std::string hash;     // SHA-256 of the 16 bytes, 64 lowercase hex digits
};

// Draws a new will token (16 bytes from `rng`); 0 on success.
int new_will(const std::string& node_id, MbedRng rng, void* rng_ctx, WillToken& out);

struct Command {
  std::string node;
  uint64_t ctr = 0;
  std::string cmd;
  std::string session;    // `sess`: the tag of the session Home Assistant holds, "" if absent
  long interval = 0;      // set_interval
  double epsilon = -1.0;  // set_epsilon
  std::string key;        // set_ha_key: base64 DER SubjectPublicKeyInfo
  std::string challenge;   // open_session: its `ch` (valid, checked by verify_command)
  bool has_challenge = false;  // open_session: `ch` was given (absent keeps the old one)
};

enum class CommandVerdict { kOk, kUnreadable, kBadSignature, kOtherNode, kReplayed, kOtherSession };

// Checks a command message against Home Assistant's key, this node's id, the last accepted
// counter and (for every command but open_session) the node's current and previous session;
// fills `out` only when the verdict is kOk.
CommandVerdict verify_command(const std::string& message, Sealer& ha, const std::string& node_id,
                              uint64_t last_ctr, const SessionTags& sessions, Command& out);

// Section 12.5: open_session opens at most one session per second. A request that comes
// sooner is kept and served when the second has passed, so Home Assistant's request is never
// lost while replayed requests cost bounded work.
class SessionRequests {
 public:
  // Records an accepted open_session; its `ch` (when given) goes into every session opened
  // from now on, an absent `ch` keeps the one before (section 12.3).
  void request(const Command& command);
  // True when a requested session should be opened now (then no longer pending).
  bool due(uint32_t now_ms);
  const std::string& challenge() const { return challenge_; }

 private:
  std::string challenge_;
  bool pending_ = false;
  bool opened_ = false;
  uint32_t last_open_ms_ = 0;
};

std::string base64_encode(const unsigned char* data, size_t len);
bool base64_decode(const std::string& text, std::string& out);

}  // namespace iotshield
