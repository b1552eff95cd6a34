// Command-line front end to the portable core, built on a Linux host by the test suite.
//
//   host_node fingerprint KEY.pem
//   host_node seal KEY.pem NODE SEQ TIME T H G L F M EPS DELTA NOISE_SEED
//       prints the plaintext, then the envelope; values may be "null"; EPS 0 = no privacy
//       member; NOISE_SEED "-" = readings as given, else the privacy layer with that seed
//   host_node noise SENSOR VALUE COUNT SEED EPS DELTA
//       prints COUNT privatized values of one sensor (t h g l m f)
//   host_node announce KEY.pem NODE FW INTERVAL EPS
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
  if (cmd == "announce" && argc == 7) {
    iotshield::Sealer sealer;
    if (load(sealer, argv[2]) != 0) return 1;
    privacy.epsilon = std::strtod(argv[6], nullptr);
    std::cout << iotshield::announce_json(argv[3], argv[4],
                                          static_cast<uint32_t>(std::strtoul(argv[5], nullptr, 10)),
                                          &privacy, sealer.fingerprint())
              << "\n";
    return 0;
  }
  std::fprintf(stderr, "usage: see the comment at the top of firmware/host/host_node.cpp\n");
  return 2;
}
