// Command-line front end to the portable core, built on a Linux host by the test suite.
//
//   host_node fingerprint KEY.pem
//   host_node rotate KEY.pem NEW.pem ...
//       one sealer loads KEY.pem, then each NEW.pem in turn, as set_ha_key does on a node;
//       prints "ok FINGERPRINT" or "kept FINGERPRINT" (the key it still holds) for each
//   host_node seal KEY.pem NODE SEQ TIME T H G L F M EPS DELTA NOISE_SEED
//       prints the plaintext, then the envelope; values may be "null"; EPS 0 = no privacy
//       member; NOISE_SEED "-" = readings as given, else the privacy layer with that seed
//   host_node noise SENSOR VALUE COUNT SEED EPS DELTA
//       prints COUNT privatized values of one sensor (t h g l m f)
//   host_node announce KEY.pem NODE FW INTERVAL EPS [NODE_KEY]
//       a NODE_KEY makes it a v2 node's announce (proto 2, rev 1, node_key)
//   host_node identity-new OUT.pem          prints the new identity's node_key
//   host_node will NODE
//       draws a will token (section 12.2); prints the last-will payload, then the token's
//       SHA-256 as 64 hex digits
//   host_node v2r1 KEY.pem IDENTITY.pem NODE SID COUNT CH WILL_HEX T H G L F M [PAD [FW]]
//       prints a revision-1 session (section 12.1) with info ch=CH (not valid base64, e.g.
//       "-": none), fw=FW (default "1.1.0"), interval 5, the default privacy, the key's
//       fingerprint, will=WILL_HEX and pad=PAD (default 256); then COUNT data messages padded
//       to PAD (telemetry seq = ctr, time 1763900000, with the default privacy member);
//       exit 1 when the session cannot be opened or a plaintext is longer than PAD
//   host_node verify-command KEY.pem NODE LAST_CTR [SESSION_KEY_HEX ...] < message
//       the node opened sessions with these 32-byte keys, oldest first (its current session
//       is the last); prints "ok CMD CTR INTERVAL EPSILON KEY CH SESS" (exit 0; "-" for an
//       empty KEY, CH or SESS) or "rejected REASON" (exit 3)
//   host_node session-requests EVENT ...
//       EVENT "r" is an accepted open_session, a number is the loop asking at that
//       millisecond whether to open the requested session; prints "open" or "wait" for each
//       number (section 12.5: at most one session per second on open_session)
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

#include "core/privacy.h"
#include "core/telemetry.h"
#include "core/v2.h"

using iotshield::NoiseSource;
using iotshield::PrivacyConfig;
using iotshield::Readings;

namespace {

// splitmix64: a seeded generator for reproducible tests only (a node uses its hardware RNG).
void seeded_bytes(void* ctx, uint8_t* out, size_t len) {
  auto* state = static_cast<uint64_t*>(ctx);
  for (size_t i = 0; i < len; ++i) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    out[i] = static_cast<uint8_t>((z ^ (z >> 31)) & 0xff);
  }
}

std::string read_file(const char* path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::optional<double> opt_number(const char* text) {
  if (std::strcmp(text, "null") == 0) return std::nullopt;
  return std::strtod(text, nullptr);
}

std::optional<bool> opt_flag(const char* text) {
  if (std::strcmp(text, "null") == 0) return std::nullopt;
  return std::strcmp(text, "1") == 0;
}

// A CTR-DRBG seeded from the host's entropy, for OAEP padding, keys and signatures.
struct Drbg {
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context ctx;
  Drbg() {
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&ctx);
    mbedtls_ctr_drbg_seed(&ctx, mbedtls_entropy_func, &entropy, nullptr, 0);
  }
  ~Drbg() {
    mbedtls_ctr_drbg_free(&ctx);
    mbedtls_entropy_free(&entropy);
  }
};

bool parse_hex(const char* text, unsigned char* out, size_t len) {
  if (std::strlen(text) != 2 * len) return false;
  for (size_t i = 0; i < len; ++i) {
    unsigned int byte = 0;
    if (!std::isxdigit(static_cast<unsigned char>(text[2 * i])) ||
        !std::isxdigit(static_cast<unsigned char>(text[2 * i + 1])) ||
        std::sscanf(text + 2 * i, "%2x", &byte) != 1) {
      return false;
    }
    out[i] = static_cast<unsigned char>(byte);
  }
  return true;
}

int load(iotshield::Sealer& sealer, const char* path) {
  int rc = sealer.load_public_key(read_file(path));
  if (rc != 0) std::fprintf(stderr, "cannot load public key: %d\n", rc);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string cmd = argv[1];
  PrivacyConfig privacy;
  if (cmd == "fingerprint" && argc == 3) {
    iotshield::Sealer sealer;
    if (load(sealer, argv[2]) != 0) return 1;
    std::cout << sealer.fingerprint() << "\n";
    return 0;
  }
  if (cmd == "rotate" && argc >= 4) {
    iotshield::Sealer sealer;
    if (load(sealer, argv[2]) != 0) return 1;
    for (int i = 3; i < argc; ++i) {
      const bool swapped = sealer.load_public_key(read_file(argv[i])) == 0;
      std::cout << (swapped ? "ok " : "kept ") << sealer.fingerprint() << "\n";
    }
    return 0;
  }
  if (cmd == "seal" && argc == 15) {
    iotshield::Sealer sealer;
    if (load(sealer, argv[2]) != 0) return 1;
    Readings r{opt_number(argv[6]), opt_number(argv[7]), opt_number(argv[8]),
               opt_number(argv[9]), opt_flag(argv[10]), opt_flag(argv[11])};
    privacy.epsilon = std::strtod(argv[12], nullptr);
    privacy.delta = std::strtod(argv[13], nullptr);
    if (std::strcmp(argv[14], "-") != 0) {
      uint64_t seed = std::strtoull(argv[14], nullptr, 10);
      NoiseSource noise(seeded_bytes, &seed);
      r = iotshield::privatize(r, privacy, noise);
    }
    const std::string plaintext = iotshield::encode_telemetry(
        argv[3], static_cast<uint32_t>(std::strtoul(argv[4], nullptr, 10)),
        static_cast<uint32_t>(std::strtoul(argv[5], nullptr, 10)), r, &privacy);
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    int rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, nullptr, 0);
    std::string envelope;
    if (rc == 0) rc = sealer.seal_v1(plaintext, mbedtls_ctr_drbg_random, &drbg, envelope);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    if (rc != 0) {
      std::fprintf(stderr, "seal failed: %d\n", rc);
      return 1;
    }
    std::cout << plaintext << "\n" << envelope << "\n";
    return 0;
  }
  if (cmd == "noise" && argc == 8) {
    const char sensor = argv[2][0];
    const double value = std::strtod(argv[3], nullptr);
    const long count = std::strtol(argv[4], nullptr, 10);
    uint64_t seed = std::strtoull(argv[5], nullptr, 10);
    privacy.epsilon = std::strtod(argv[6], nullptr);
    privacy.delta = std::strtod(argv[7], nullptr);
    NoiseSource noise(seeded_bytes, &seed);
    Readings r;
    switch (sensor) {
      case 't': r.t = value; break;
      case 'h': r.h = value; break;
      case 'g': r.g = value; break;
      case 'l': r.l = value; break;
      case 'm': r.m = value != 0; break;
      case 'f': r.f = value != 0; break;
      default: return 2;
    }
    for (long i = 0; i < count; ++i) {
      const Readings out = iotshield::privatize(r, privacy, noise);
      switch (sensor) {
        case 't': std::printf("%.17g\n", *out.t); break;
        case 'h': std::printf("%.17g\n", *out.h); break;
        case 'g': std::printf("%.17g\n", *out.g); break;
        case 'l': std::printf("%.17g\n", *out.l); break;
        case 'm': std::printf("%d\n", *out.m ? 1 : 0); break;
        default: std::printf("%d\n", *out.f ? 1 : 0); break;
      }
    }
    return 0;
  }
  if (cmd == "announce" && (argc == 7 || argc == 8)) {
    iotshield::Sealer sealer;
    if (load(sealer, argv[2]) != 0) return 1;
    privacy.epsilon = std::strtod(argv[6], nullptr);
    std::cout << iotshield::announce_json(argv[3], argv[4],
                                          static_cast<uint32_t>(std::strtoul(argv[5], nullptr, 10)),
                                          &privacy, sealer.fingerprint(),
                                          argc == 8 ? argv[7] : "")
              << "\n";
    return 0;
  }
  if (cmd == "identity-new" && argc == 3) {
    Drbg drbg;
    iotshield::Identity identity;
    if (identity.generate(mbedtls_ctr_drbg_random, &drbg.ctx) != 0) return 1;
    std::ofstream(argv[2]) << identity.private_pem();
    std::cout << identity.public_der_b64() << "\n";
    return 0;
  }
  if (cmd == "will" && argc == 3) {
    Drbg drbg;
    iotshield::WillToken will;
    if (iotshield::new_will(argv[2], mbedtls_ctr_drbg_random, &drbg.ctx, will) != 0) return 1;
    std::cout << will.payload << "\n" << will.hash << "\n";
    return 0;
  }
  if (cmd == "v2r1" && argc >= 15 && argc <= 17) {
    Drbg drbg;
    iotshield::Sealer sealer;
    iotshield::Identity identity;
    if (load(sealer, argv[2]) != 0) return 1;
    if (identity.load_pem(read_file(argv[3]), mbedtls_ctr_drbg_random, &drbg.ctx) != 0) {
      std::fprintf(stderr, "cannot load identity\n");
      return 1;
    }
    const std::string node = argv[4];
    iotshield::SessionInfo info;
    info.challenge = argv[7];
    info.firmware = argc == 17 ? argv[16] : "1.1.0";
    info.interval = 5;
    info.privacy = privacy.announce_json();
    info.key_fp = sealer.fingerprint();
    info.will = argv[8];
    if (argc >= 16) info.pad = std::strtoul(argv[15], nullptr, 10);
    iotshield::SessionSender session;
    std::string message;
    if (session.open(node, static_cast<uint32_t>(std::strtoul(argv[5], nullptr, 10)), info,
                     sealer, identity, mbedtls_ctr_drbg_random, &drbg.ctx, message) != 0) {
      std::fprintf(stderr, "cannot open the session\n");
      return 1;
    }
    std::cout << message << "\n";
    Readings r{opt_number(argv[9]), opt_number(argv[10]), opt_number(argv[11]),
               opt_number(argv[12]), opt_flag(argv[13]), opt_flag(argv[14])};
    const long count = std::strtol(argv[6], nullptr, 10);
    for (long i = 1; i <= count; ++i) {
      const std::string plaintext =
          iotshield::encode_telemetry(node, static_cast<uint32_t>(i), 1763900000, r, &privacy);
      if (session.seal(node, plaintext, message) != 0) {
        std::fprintf(stderr, "cannot seal a plaintext of %zu bytes\n", plaintext.size());
        return 1;
      }
      std::cout << message << "\n";
    }
    return 0;
  }
  if (cmd == "verify-command" && argc >= 5) {
    iotshield::Sealer sealer;
    if (load(sealer, argv[2]) != 0) return 1;
    iotshield::SessionTags sessions;
    for (int i = 5; i < argc; ++i) {
      unsigned char key[32];
      if (!parse_hex(argv[i], key, sizeof(key))) {
        std::fprintf(stderr, "a session key is 64 hex digits\n");
        return 2;
      }
      sessions.opened(iotshield::session_tag(key));
    }
    std::stringstream in;
    in << std::cin.rdbuf();
    iotshield::Command command;
    const auto verdict = iotshield::verify_command(
        in.str(), sealer, argv[3], std::strtoull(argv[4], nullptr, 10), sessions, command);
    static const char* const kNames[] = {"ok",       "unreadable", "bad_signature",
                                         "other_node", "replayed", "other_session"};
    if (verdict != iotshield::CommandVerdict::kOk) {
      std::cout << "rejected " << kNames[static_cast<int>(verdict)] << "\n";
      return 3;
    }
    const auto shown = [](const std::string& text) { return text.empty() ? "-" : text; };
    std::cout << "ok " << command.cmd << " " << command.ctr << " " << command.interval << " "
              << command.epsilon << " " << shown(command.key) << " " << shown(command.challenge)
              << " " << shown(command.session) << "\n";
    return 0;
  }
  if (cmd == "session-requests") {
    iotshield::SessionRequests requests;
    for (int i = 2; i < argc; ++i) {
      if (std::strcmp(argv[i], "r") == 0) {
        requests.request(iotshield::Command{});
      } else {
        const auto now = static_cast<uint32_t>(std::strtoul(argv[i], nullptr, 10));
        std::cout << (requests.due(now) ? "open" : "wait") << "\n";
      }
    }
    return 0;
  }
  std::fprintf(stderr, "usage: see the comment at the top of firmware/host/host_node.cpp\n");
  return 2;
}
