#include "v2.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <mbedtls/base64.h>
#include <mbedtls/ecp.h>
#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/version.h>

namespace iotshield {

namespace {

constexpr size_t kWillTokenBytes = 16;
constexpr size_t kTagBytes = 16;
constexpr uint32_t kSessionRequestSpacingMs = 1000;

bool sha256(const std::string& data, unsigned char out[32]) {
  return mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                    reinterpret_cast<const unsigned char*>(data.data()), data.size(), out) == 0;
}

const unsigned char* bytes(const std::string& text) {
  return reinterpret_cast<const unsigned char*>(text.data());
}

bool is_hex(const std::string& text, size_t digits, bool lowercase_only) {
  if (text.size() != digits) return false;
  for (const char c : text) {
    const bool lower = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    const bool upper = c >= 'A' && c <= 'F';
    if (!lower && !(upper && !lowercase_only)) return false;
  }
  return true;
}

// A JSON string literal: quotes, backslashes and control characters escaped.
std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Characters, not bytes: UTF-8 continuation bytes are not counted.
size_t utf8_length(const std::string& text) {
  size_t n = 0;
  for (const char c : text) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

// ---- A small reader for the flat JSON objects of commands (section 11) ----------------------
// The outer message is anyone's text until its signature verifies, so every step is bounds
// checked and nesting is skipped without recursion.

struct Member {
  std::string key;
  std::string value;  // decoded text of a string, else the raw JSON text of the value
  bool is_string = false;
};

size_t skip_space(const std::string& s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads the JSON string starting at s[i] == '"' into `out`; returns the index after its closing
// quote, or npos. Commands are ASCII, so a \u escape beyond ASCII makes the text unreadable.
size_t read_string(const std::string& s, size_t i, std::string& out) {
  out.clear();
  for (++i; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') return i + 1;
    if (static_cast<unsigned char>(c) < 0x20) return std::string::npos;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i >= s.size()) return std::string::npos;
    switch (s[i]) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        if (i + 4 >= s.size()) return std::string::npos;
        int code = 0;
        for (int k = 1; k <= 4; ++k) {
          const int v = hex_value(s[i + k]);
          if (v < 0) return std::string::npos;
          code = code * 16 + v;
        }
        if (code >= 0x80) return std::string::npos;
        out += static_cast<char>(code);
        i += 4;
        break;
      }
      default:
        return std::string::npos;
    }
  }
  return std::string::npos;
}

// Skips one JSON value starting at s[i]; returns the index after it, or npos.
size_t skip_value(const std::string& s, size_t i) {
  std::string ignored;
  if (i >= s.size()) return std::string::npos;
  if (s[i] == '"') return read_string(s, i, ignored);
  if (s[i] == '{' || s[i] == '[') {
    size_t depth = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '"') {
        i = read_string(s, i, ignored);
        if (i == std::string::npos) return i;
        continue;
      }
      if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return std::string::npos;
  }
  const size_t start = i;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '-' ||
                          s[i] == '+' || s[i] == '.')) {
    ++i;
  }
  return i == start ? std::string::npos : i;
}

// The members of one JSON object; false when the text is not an object, or names a member
// twice (a reader that took the first of two would disagree with Home Assistant's).
bool parse_object(const std::string& s, std::vector<Member>& out) {
  out.clear();
  size_t i = skip_space(s, 0);
  if (i >= s.size() || s[i] != '{') return false;
  i = skip_space(s, i + 1);
  if (i < s.size() && s[i] == '}') return skip_space(s, i + 1) == s.size();
  for (;;) {
    if (i >= s.size() || s[i] != '"') return false;
    Member m;
    i = read_string(s, i, m.key);
    if (i == std::string::npos) return false;
    i = skip_space(s, i);
    if (i >= s.size() || s[i] != ':') return false;
    i = skip_space(s, i + 1);
    const size_t end = skip_value(s, i);
    if (end == std::string::npos) return false;
    m.is_string = s[i] == '"';
    if (m.is_string) {
      read_string(s, i, m.value);
    } else {
      m.value = s.substr(i, end - i);
    }
    for (const Member& seen : out) {
      if (seen.key == m.key) return false;
    }
    out.push_back(m);
    i = skip_space(s, end);
    if (i < s.size() && s[i] == ',') {
      i = skip_space(s, i + 1);
      continue;
    }
    if (i < s.size() && s[i] == '}') return skip_space(s, i + 1) == s.size();
    return false;
  }
}

const Member* find(const std::vector<Member>& members, const char* key) {
  for (const Member& m : members) {
    if (m.key == key) return &m;
  }
  return nullptr;
}

bool string_value(const std::vector<Member>& members, const char* key, std::string& out) {
  const Member* m = find(members, key);
  if (m == nullptr || !m->is_string) return false;
  out = m->value;
  return true;
}

// A JSON integer made of digits only, at most `max`.
bool unsigned_value(const std::vector<Member>& members, const char* key, uint64_t max,
                    uint64_t& out) {
  const Member* m = find(members, key);
  if (m == nullptr || m->is_string || m->value.empty()) return false;
  uint64_t value = 0;
  for (const char c : m->value) {
    if (c < '0' || c > '9') return false;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (max - digit) / 10) return false;
    value = value * 10 + digit;
  }
  out = value;
  return true;
}

bool number_value(const std::vector<Member>& members, const char* key, double& out) {
  const Member* m = find(members, key);
  if (m == nullptr || m->is_string || m->value.empty()) return false;
  char* end = nullptr;
  const double value = std::strtod(m->value.c_str(), &end);
  if (end != m->value.c_str() + m->value.size() || !std::isfinite(value)) return false;
  out = value;
  return true;
}

}  // namespace

std::string base64_encode(const unsigned char* data, size_t len) {
  std::vector<unsigned char> buf(4 * ((len + 2) / 3) + 1);
  size_t written = 0;
  if (mbedtls_base64_encode(buf.data(), buf.size(), &written, data, len) != 0) return "";
  return std::string(reinterpret_cast<char*>(buf.data()), written);
}

bool base64_decode(const std::string& text, std::string& out) {
  std::vector<unsigned char> buf(text.size() * 3 / 4 + 3);
  size_t written = 0;
  if (mbedtls_base64_decode(buf.data(), buf.size(), &written, bytes(text), text.size()) != 0) {
    return false;
  }
  out.assign(reinterpret_cast<char*>(buf.data()), written);
  return true;
}

bool is_challenge(const std::string& text) {
  if (text.size() > kMaxChallenge) return false;
  for (const char c : text) {
    const bool alphabet = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
    if (!alphabet) return false;
  }
  // mbedTLS's decoder tolerates line breaks and spaces; encoding the decoded bytes again and
  // comparing leaves exactly canonical, padded base64 (section 3).
  std::string raw;
  return base64_decode(text, raw) && base64_encode(bytes(raw), raw.size()) == text;
}

std::string session_info_json(const SessionInfo& info) {
  const size_t fw_length = utf8_length(info.firmware);
  const bool privacy_ok =
      info.privacy == "null" || (!info.privacy.empty() && info.privacy.front() == '{');
  if (fw_length < 1 || fw_length > 32 || info.interval < 1 || info.interval > 86400 ||
      info.pad < kMinPad || info.pad > kMaxPad || !privacy_ok || !is_hex(info.key_fp, 64, true) ||
      !is_hex(info.will, 64, true)) {
    return "";
  }
  const std::string challenge = is_challenge(info.challenge) ? info.challenge : "";
  // Members in alphabetical order, compact: one spelling for every implementation.
  return "{\"ch\":" + json_string(challenge) + ",\"fw\":" + json_string(info.firmware) +
         ",\"interval\":" + std::to_string(info.interval) + ",\"key_fp\":" +
         json_string(info.key_fp) + ",\"pad\":" + std::to_string(info.pad) +
         ",\"privacy\":" + info.privacy + ",\"will\":" + json_string(info.will) + "}";
}

std::string session_tag(const unsigned char key[32]) {
  unsigned char digest[32];
  const std::string label = "iotshield-v2-command|";
  if (!sha256(label + std::string(reinterpret_cast<const char*>(key), 32), digest)) return "";
  return hex_digits(digest, kTagBytes);
}

void SessionTags::opened(const std::string& tag) {
  previous_ = current_;
  current_ = tag;
}

bool SessionTags::names(const std::string& tag) const {
  return !tag.empty() && (tag == current_ || tag == previous_);
}

int new_will(const std::string& node_id, MbedRng rng, void* rng_ctx, WillToken& out) {
  unsigned char token[kWillTokenBytes];
  const int rc = rng(rng_ctx, token, sizeof(token));
  if (rc != 0) return rc;
  unsigned char digest[32];
  if (mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), token, sizeof(token), digest) !=
      0) {
    return -1;
  }
  out.payload = "{\"state\":\"offline\",\"node\":\"" + node_id + "\",\"will\":\"" +
                base64_encode(token, sizeof(token)) + "\"}";
  out.hash = hex_digits(digest, sizeof(digest));
  mbedtls_platform_zeroize(token, sizeof(token));
  return 0;
}

Identity::Identity() { mbedtls_pk_init(&pk_); }
Identity::~Identity() { mbedtls_pk_free(&pk_); }

int Identity::generate(MbedRng rng, void* rng_ctx) {
  int rc = mbedtls_pk_setup(&pk_, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
  if (rc == 0) rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk_), rng, rng_ctx);
  ready_ = rc == 0;
  return rc;
}

int Identity::load_pem(const std::string& pem, MbedRng rng, void* rng_ctx) {
  const auto* data = reinterpret_cast<const unsigned char*>(pem.c_str());
#if MBEDTLS_VERSION_MAJOR >= 3
  int rc = mbedtls_pk_parse_key(&pk_, data, pem.size() + 1, nullptr, 0, rng, rng_ctx);
#else
  (void)rng;
  (void)rng_ctx;
  int rc = mbedtls_pk_parse_key(&pk_, data, pem.size() + 1, nullptr, 0);
#endif
  if (rc == 0 && mbedtls_pk_get_type(&pk_) != MBEDTLS_PK_ECKEY) rc = -1;
  ready_ = rc == 0;
  return rc;
}

std::string Identity::private_pem() {
  std::vector<unsigned char> buf(1024);
  if (!ready_ || mbedtls_pk_write_key_pem(&pk_, buf.data(), buf.size()) != 0) return "";
  return reinterpret_cast<char*>(buf.data());
}

std::string Identity::public_der_b64() {
  std::vector<unsigned char> der(256);
  const int len = mbedtls_pk_write_pubkey_der(&pk_, der.data(), der.size());
  if (!ready_ || len <= 0) return "";
  return base64_encode(der.data() + der.size() - len, static_cast<size_t>(len));
}

std::string Identity::fingerprint() {
  std::vector<unsigned char> der(256);
  const int len = mbedtls_pk_write_pubkey_der(&pk_, der.data(), der.size());
  if (!ready_ || len <= 0) return "";
  unsigned char digest[32];
  const std::string key(reinterpret_cast<const char*>(der.data() + der.size() - len),
                        static_cast<size_t>(len));
  if (!sha256(key, digest)) return "";
  return hex_digits(digest, sizeof(digest));
}

int Identity::sign(const std::string& data, MbedRng rng, void* rng_ctx, std::string& der) {
  unsigned char hash[32];
  if (!ready_ || !sha256(data, hash)) return -1;
  unsigned char sig[MBEDTLS_ECDSA_MAX_LEN];
  size_t sig_len = 0;
#if MBEDTLS_VERSION_MAJOR >= 3
  int rc = mbedtls_pk_sign(&pk_, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, sizeof(sig),
                           &sig_len, rng, rng_ctx);
#else
  int rc = mbedtls_pk_sign(&pk_, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, &sig_len, rng,
                           rng_ctx);
#endif
  if (rc == 0) der.assign(reinterpret_cast<char*>(sig), sig_len);
  return rc;
}

int SessionSender::open(const std::string& node_id, uint32_t sid, const SessionInfo& info,
                        Sealer& ha, Identity& identity, MbedRng rng, void* rng_ctx,
                        std::string& message) {
  const std::string info_json = session_info_json(info);
  if (sid == 0 || info_json.empty()) return -1;
  // The new key is committed only once the whole message exists, so a failure leaves the
  // running session usable.
  unsigned char key[32];
  int rc = rng(rng_ctx, key, sizeof(key));
  std::string ek;
  if (rc == 0) {
    rc = ha.encrypt(std::string(reinterpret_cast<char*>(key), sizeof(key)), rng, rng_ctx, ek);
  }
  std::string sig;
  if (rc == 0) {
    const std::string signed_bytes =
        "iotshield-v2r1-session|" + node_id + "|" + std::to_string(sid) + "|" + ek + info_json;
    rc = identity.sign(signed_bytes, rng, rng_ctx, sig);
  }
  std::string out;
  if (rc == 0) {
    // `info` travels as a JSON string so that the signed bytes are the received bytes; it
    // holds no control characters (json_string escaped them), only quotes and backslashes.
    std::string info_string;
    for (const char c : info_json) {
      if (c == '"' || c == '\\') info_string += '\\';
      info_string += c;
    }
    out = "{\"v\":2,\"type\":\"session\",\"sid\":" + std::to_string(sid) + ",\"ek\":\"" +
          base64_encode(bytes(ek), ek.size()) + "\",\"info\":\"" + info_string +
          "\",\"sig\":\"" + base64_encode(bytes(sig), sig.size()) + "\"}";
    if (out.size() > kMaxSessionMessage) rc = -2;
  }
  if (rc == 0) {
    std::memcpy(key_, key, sizeof(key_));
    sid_ = sid;
    ctr_ = 0;
    pad_ = info.pad;
    tags_.opened(session_tag(key_));
    message = out;
  }
  mbedtls_platform_zeroize(key, sizeof(key));
  return rc;
}

int SessionSender::seal(const std::string& node_id, const std::string& plaintext,
                        std::string& message) {
  if (sid_ == 0) return -1;
  // Section 12.4: one length for every reading; a longer one would reveal what was measured.
  if (plaintext.size() > pad_) return -2;
  std::string padded = plaintext;
  padded.append(pad_ - plaintext.size(), ' ');
  ++ctr_;
  unsigned char nonce[12] = {0};
  for (int i = 0; i < 8; ++i) {
    nonce[11 - i] = static_cast<unsigned char>((uint64_t{ctr_} >> (8 * i)) & 0xff);
  }
  const std::string aad =
      "iotshield-v2|" + node_id + "|" + std::to_string(sid_) + "|" + std::to_string(ctr_);
  std::vector<unsigned char> out(padded.size() + 16);
  mbedtls_gcm_context gcm;
  mbedtls_gcm_init(&gcm);
  int rc = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key_, 256);
  if (rc == 0) {
    rc = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, padded.size(), nonce, sizeof(nonce),
                                   bytes(aad), aad.size(), bytes(padded), out.data(), 16,
                                   out.data() + padded.size());
  }
  mbedtls_gcm_free(&gcm);
  if (rc != 0) return rc;
  message = "{\"v\":2,\"type\":\"data\",\"sid\":" + std::to_string(sid_) +
            ",\"ctr\":" + std::to_string(ctr_) + ",\"ct\":\"" +
            base64_encode(out.data(), out.size()) + "\"}";
  return 0;
}

CommandVerdict verify_command(const std::string& message, Sealer& ha, const std::string& node_id,
                              uint64_t last_ctr, const SessionTags& sessions, Command& out) {
  std::vector<Member> envelope;
  std::string body;
  std::string sig_b64;
  std::string sig;
  uint64_t version = 0;
  if (!parse_object(message, envelope) || !unsigned_value(envelope, "v", 255, version) ||
      version != 2 || !string_value(envelope, "body", body) ||
      !string_value(envelope, "sig", sig_b64) || !base64_decode(sig_b64, sig)) {
    return CommandVerdict::kUnreadable;
  }
  if (ha.verify_pss(body, sig) != 0) return CommandVerdict::kBadSignature;
  // From here on the body is Home Assistant's own text.
  std::vector<Member> members;
  std::vector<Member> args;
  Command command;
  const Member* args_member = nullptr;
  if (!parse_object(body, members) || !string_value(members, "node", command.node) ||
      !unsigned_value(members, "ctr", UINT64_MAX, command.ctr) ||
      !string_value(members, "cmd", command.cmd)) {
    return CommandVerdict::kUnreadable;
  }
  args_member = find(members, "args");
  if (args_member != nullptr &&
      (args_member->is_string || !parse_object(args_member->value, args))) {
    return CommandVerdict::kUnreadable;
  }
  if (command.node != node_id) return CommandVerdict::kOtherNode;
  if (command.ctr <= last_ctr) return CommandVerdict::kReplayed;
  string_value(members, "sess", command.session);
  // Section 12.5: open_session needs no session (it is how a node without one gets one);
  // everything else must name a session this node still holds.
  if (command.cmd != "open_session" && !sessions.names(command.session)) {
    return CommandVerdict::kOtherSession;
  }
  uint64_t interval = 0;
  // At most INT32_MAX, so that it fits a long on the ESP32 too; the caller checks the range.
  if (unsigned_value(args, "interval", INT32_MAX, interval)) {
    command.interval = static_cast<long>(interval);
  }
  number_value(args, "epsilon", command.epsilon);
  string_value(args, "key", command.key);
  // Section 12.3: a `ch` that is not a challenge (or not a string) spoils the whole command.
  if (find(args, "ch") != nullptr) {
    if (!string_value(args, "ch", command.challenge) || !is_challenge(command.challenge)) {
      return CommandVerdict::kUnreadable;
    }
    command.has_challenge = true;
  }
  out = command;
  return CommandVerdict::kOk;
}

void SessionRequests::request(const Command& command) {
  if (command.has_challenge) challenge_ = command.challenge;
  pending_ = true;
}

bool SessionRequests::due(uint32_t now_ms) {
  if (!pending_) return false;
  // Unsigned subtraction keeps the spacing right across the millisecond counter's wrap.
  if (opened_ && now_ms - last_open_ms_ < kSessionRequestSpacingMs) return false;
  pending_ = false;
  opened_ = true;
  last_open_ms_ = now_ms;
  return true;
}

}  // namespace iotshield
