// The node's privacy layer (PROTOCOL.md section 7): Gaussian mechanism for continuous signals,
// bounded gas noise, randomized response for motion, flame untouched, clamping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "readings.h"

namespace iotshield {

struct PrivacyConfig {
  double epsilon = 0.5;  // 0 switches continuous noise off
  double delta = 1e-5;
  double sens_t = 0.1;
  double sens_h = 0.25;
  double sens_g = 0.002;
  double sens_l = 5.0;
  double gas_bound = 0.03;
  double motion_epsilon = 2.0;  // 0 switches randomized response off

  bool enabled() const { return epsilon > 0; }
  double sigma(char sensor) const;
  double motion_flip() const;
  // The "privacy" member of the announce (section 5), or "null".
  std::string announce_json() const;
};

double gaussian_sigma(double sensitivity, double epsilon, double delta);
double flip_rate(double epsilon);

// Fills `len` random bytes; on the ESP32 the hardware RNG, on a host a CSPRNG or, in tests,
// a seeded generator.
using RandomBytes = void (*)(void* ctx, uint8_t* out, size_t len);

class NoiseSource {
 public:
  NoiseSource(RandomBytes fill, void* ctx) : fill_(fill), ctx_(ctx) {}
  double uniform();  // in (0, 1], 53 random bits
  double gauss();    // N(0, 1) by Box-Muller

 private:
  RandomBytes fill_;
  void* ctx_;
};

// Node-side clamp ranges: what the node's sensors can report.
struct ClampRange {
  double low;
  double high;
};
ClampRange clamp_range(char sensor);

Readings privatize(const Readings& raw, const PrivacyConfig& config, NoiseSource& noise);

}  // namespace iotshield
