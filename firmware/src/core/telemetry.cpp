#include "telemetry.h"

#include <cstdio>
#include <vector>

#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/rsa.h>
#include <mbedtls/version.h>

namespace iotshield {

namespace {
constexpr size_t kOaepSha256Overhead = 66;
constexpr size_t kMinHaKeyBits = 2048;

std::string number(const std::optional<double>& value, int decimals) {
  if (!value) return "null";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, *value);
  return buf;
}

std::string flag(const std::optional<bool>& value) {
  if (!value) return "null";
  return *value ? "1" : "0";
}

std::string general(double value) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.4g", value);
  return buf;
}
}  // namespace

std::string encode_telemetry(const std::string& node_id, uint32_t seq, uint32_t timestamp,
                             const Readings& r, const PrivacyConfig* privacy) {
  std::string out = "{\"n\":\"" + node_id + "\",\"s\":" + std::to_string(seq) +
                    ",\"t\":" + std::to_string(timestamp) + ",\"r\":{\"t\":" + number(r.t, 2) +
                    ",\"h\":" + number(r.h, 2) + ",\"g\":" + number(r.g, 3) +
                    ",\"f\":" + flag(r.f) + ",\"m\":" + flag(r.m) + ",\"l\":" + number(r.l, 2) +
                    "}";
  if (privacy != nullptr && privacy->enabled()) {
    out += ",\"p\":{\"e\":" + general(privacy->epsilon) + ",\"d\":" + general(privacy->delta) +
           "}";
  }
  return out + "}";
}

std::string announce_json(const std::string& node_id, const std::string& firmware,
                          uint32_t interval, const PrivacyConfig* privacy,
                          const std::string& key_fingerprint, const std::string& node_key) {
  std::string out = "{\"state\":\"online\",\"node\":\"" + node_id + "\",\"fw\":\"" + firmware +
                    "\",\"interval\":" + std::to_string(interval) +
                    ",\"sensors\":[\"t\",\"h\",\"g\",\"f\",\"m\",\"l\"],\"privacy\":" +
                    (privacy != nullptr ? privacy->announce_json() : std::string("null")) +
                    ",\"key_fp\":\"" + key_fingerprint + "\"";
  if (!node_key.empty()) out += ",\"proto\":2,\"rev\":1,\"node_key\":\"" + node_key + "\"";
  return out + "}";
}

std::string hex_digits(const unsigned char* data, size_t len) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (size_t i = 0; i < len; ++i) {
    out += hex[data[i] >> 4];
    out += hex[data[i] & 0x0f];
  }
  return out;
}

Sealer::Sealer() { mbedtls_pk_init(&pk_); }

Sealer::~Sealer() { mbedtls_pk_free(&pk_); }

int Sealer::load_public_key(const std::string& pem) {
  // Parsed into a fresh context: mbedTLS refuses to parse into one that already holds a key
  // (a key rotation), and a key that fails to load must leave the old one in place.
  mbedtls_pk_context fresh;
  mbedtls_pk_init(&fresh);
  // mbedTLS wants the terminating NUL counted in a PEM buffer's length.
  int rc = mbedtls_pk_parse_public_key(
      &fresh, reinterpret_cast<const unsigned char*>(pem.c_str()), pem.size() + 1);
  if (rc == 0 && mbedtls_pk_get_type(&fresh) != MBEDTLS_PK_RSA) rc = -1;
  // PROTOCOL.md section 2: Home Assistant's keys have at least 2048 bits; a weaker one offered
  // by set_ha_key is refused, as the reference node refuses it.
  if (rc == 0 && mbedtls_pk_get_bitlen(&fresh) < kMinHaKeyBits) rc = -1;
  if (rc != 0) {
    mbedtls_pk_free(&fresh);
    return rc;
  }
  // OAEP (PKCS#1 v2.1) with SHA-256; the return value only exists from mbedTLS 3.
  mbedtls_rsa_set_padding(mbedtls_pk_rsa(fresh), MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256);
  // The context owns its key through a pointer: handing it over is a plain copy.
  mbedtls_pk_free(&pk_);
  pk_ = fresh;
  loaded_ = true;
  return 0;
}

size_t Sealer::max_plaintext() const {
  return loaded_ ? mbedtls_pk_get_len(&pk_) - kOaepSha256Overhead : 0;
}

std::string Sealer::fingerprint() const {
  if (!loaded_) return "";
  std::vector<unsigned char> der(2048);
  // mbedtls_pk_write_pubkey_der writes at the end of the buffer and returns the length.
  const int len = mbedtls_pk_write_pubkey_der(const_cast<mbedtls_pk_context*>(&pk_), der.data(),
                                              der.size());
  if (len <= 0) return "";
  unsigned char digest[32];
  mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), der.data() + der.size() - len,
             static_cast<size_t>(len), digest);
  return hex_digits(digest, sizeof(digest));
}

int Sealer::encrypt(const std::string& plaintext, MbedRng rng, void* rng_ctx,
                    std::string& ciphertext) {
  if (!loaded_) return -1;
  if (plaintext.size() > max_plaintext()) return -2;
  std::vector<unsigned char> out(mbedtls_pk_get_len(&pk_));
  size_t written = 0;
  const int rc = mbedtls_pk_encrypt(&pk_, reinterpret_cast<const unsigned char*>(plaintext.data()),
                                    plaintext.size(), out.data(), &written, out.size(), rng,
                                    rng_ctx);
  if (rc == 0) ciphertext.assign(reinterpret_cast<char*>(out.data()), written);
  return rc;
}

int Sealer::verify_pss(const std::string& data, const std::string& signature) {
  if (!loaded_) return -1;
  unsigned char hash[32];
  int rc = mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                      reinterpret_cast<const unsigned char*>(data.data()), data.size(), hash);
  if (rc != 0) return rc;
  // The key's padding is PKCS#1 v2.1 with SHA-256 (set at load), so this checks RSASSA-PSS.
  return mbedtls_pk_verify(&pk_, MBEDTLS_MD_SHA256, hash, sizeof(hash),
                           reinterpret_cast<const unsigned char*>(signature.data()),
                           signature.size());
}

int Sealer::seal_v1(const std::string& plaintext, MbedRng rng, void* rng_ctx,
                    std::string& envelope) {
  std::string raw;
  int rc = encrypt(plaintext, rng, rng_ctx, raw);
  if (rc != 0) return rc;
  const size_t written = raw.size();
  std::vector<unsigned char> b64(4 * ((written + 2) / 3) + 1);
  size_t b64_len = 0;
  rc = mbedtls_base64_encode(b64.data(), b64.size(), &b64_len,
                             reinterpret_cast<const unsigned char*>(raw.data()), written);
  if (rc != 0) return rc;
  envelope = "{\"v\":1,\"ct\":\"" + std::string(reinterpret_cast<char*>(b64.data()), b64_len) +
             "\"}";
  return 0;
}

}  // namespace iotshield
