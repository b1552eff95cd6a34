#include "v2.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <mbedtls/base64.h>
#include <mbedtls/ecp.h>
#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <mbedtls/version.h>

namespace iotshield {

namespace {

bool sha256(const std::string& data, unsigned char out[32]) {
  return mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                    reinterpret_cast<const unsigned char*>(data.data()), data.size(), out) == 0;
}

// Finds "key": in a flat JSON object and returns the position just after the colon.
size_t member(const std::string& json, const char* key) {
  const std::string needle = std::string("\"") + key + "\":";
  const size_t at = json.find(needle);
  return at == std::string::npos ? at : at + needle.size();
}

// Reads a JSON string member, undoing \" and \\ escapes; false if absent or malformed.
bool string_member(const std::string& json, const char* key, std::string& out) {
  size_t i = member(json, key);
  if (i == std::string::npos || i >= json.size() || json[i] != '"') return false;
  out.clear();
  for (++i; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '"') return true;
    if (c == '\\') {
      if (++i >= json.size()) return false;
      const char e = json[i];
      if (e != '"' && e != '\\' && e != '/') return false;  // commands need no other escapes
      out += e;
    } else {
      out += c;
    }
  }
  return false;
}

bool number_member(const std::string& json, const char* key, double& out) {
  const size_t i = member(json, key);
  if (i == std::string::npos || i >= json.size()) return false;
  char* end = nullptr;
  out = std::strtod(json.c_str() + i, &end);
  return end != json.c_str() + i;
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
  if (mbedtls_base64_decode(buf.data(), buf.size(), &written,
                            reinterpret_cast<const unsigned char*>(text.data()),
                            text.size()) != 0) {
    return false;
  }
  out.assign(reinterpret_cast<char*>(buf.data()), written);
  return true;
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

int SessionSender::open(const std::string& node_id, uint32_t sid, Sealer& ha, Identity& identity,
                        MbedRng rng, void* rng_ctx, std::string& message) {
  int rc = rng(rng_ctx, key_, sizeof(key_));
  if (rc != 0) return rc;
  std::string ek;
  rc = ha.encrypt(std::string(reinterpret_cast<char*>(key_), sizeof(key_)), rng, rng_ctx, ek);
  if (rc != 0) return rc;
  const std::string signed_bytes =
      "iotshield-v2-session|" + node_id + "|" + std::to_string(sid) + "|" + ek;
  std::string sig;
  rc = identity.sign(signed_bytes, rng, rng_ctx, sig);
  if (rc != 0) return rc;
  sid_ = sid;
  ctr_ = 0;
  message = "{\"v\":2,\"type\":\"session\",\"sid\":" + std::to_string(sid) + ",\"ek\":\"" +
            base64_encode(reinterpret_cast<const unsigned char*>(ek.data()), ek.size()) +
            "\",\"sig\":\"" +
            base64_encode(reinterpret_cast<const unsigned char*>(sig.data()), sig.size()) + "\"}";
  return 0;
}

int SessionSender::seal(const std::string& node_id, const std::string& plaintext,
                        std::string& message) {
  if (sid_ == 0) return -1;
  ++ctr_;
  unsigned char nonce[12] = {0};
  for (int i = 0; i < 8; ++i) nonce[11 - i] = static_cast<unsigned char>((uint64_t{ctr_} >> (8 * i)) & 0xff);
  const std::string aad =
      "iotshield-v2|" + node_id + "|" + std::to_string(sid_) + "|" + std::to_string(ctr_);
  std::vector<unsigned char> out(plaintext.size() + 16);
  mbedtls_gcm_context gcm;
  mbedtls_gcm_init(&gcm);
  int rc = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key_, 256);
  if (rc == 0) {
    rc = mbedtls_gcm_crypt_and_tag(
        &gcm, MBEDTLS_GCM_ENCRYPT, plaintext.size(), nonce, sizeof(nonce),
        reinterpret_cast<const unsigned char*>(aad.data()), aad.size(),
        reinterpret_cast<const unsigned char*>(plaintext.data()), out.data(), 16,
        out.data() + plaintext.size());
  }
  mbedtls_gcm_free(&gcm);
  if (rc != 0) return rc;
  message = "{\"v\":2,\"type\":\"data\",\"sid\":" + std::to_string(sid_) +
            ",\"ctr\":" + std::to_string(ctr_) + ",\"ct\":\"" +
            base64_encode(out.data(), out.size()) + "\"}";
  return 0;
}

CommandVerdict verify_command(const std::string& message, Sealer& ha, const std::string& node_id,
                              uint64_t last_ctr, Command& out) {
  std::string body;
  std::string sig_b64;
  std::string sig;
  double version = 0;
  if (!number_member(message, "v", version) || version != 2 ||
      !string_member(message, "body", body) || !string_member(message, "sig", sig_b64) ||
      !base64_decode(sig_b64, sig)) {
    return CommandVerdict::kUnreadable;
  }
  if (ha.verify_pss(body, sig) != 0) return CommandVerdict::kBadSignature;
  // From here on the body is Home Assistant's own text.
  Command command;
  double ctr = 0;
  if (!string_member(body, "node", command.node) || !number_member(body, "ctr", ctr) ||
      !string_member(body, "cmd", command.cmd)) {
    return CommandVerdict::kUnreadable;
  }
  if (command.node != node_id) return CommandVerdict::kOtherNode;
  command.ctr = static_cast<uint64_t>(ctr);
  if (command.ctr <= last_ctr) return CommandVerdict::kReplayed;
  double value = 0;
  if (number_member(body, "interval", value)) command.interval = static_cast<long>(value);
  if (number_member(body, "epsilon", value)) command.epsilon = value;
  string_member(body, "key", command.key);
  out = command;
  return CommandVerdict::kOk;
}

}  // namespace iotshield
