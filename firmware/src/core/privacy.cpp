#include "privacy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace iotshield {

namespace {
constexpr double kPi = 3.14159265358979323846;

std::string fmt(const char* format, double value) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), format, value);
  return buf;
}

double clamp_to(char sensor, double value) {
  const ClampRange range = clamp_range(sensor);
  return std::min(std::max(value, range.low), range.high);
}
}  // namespace

double gaussian_sigma(double sensitivity, double epsilon, double delta) {
  return sensitivity * std::sqrt(2.0 * std::log(1.25 / delta)) / epsilon;
}

double flip_rate(double epsilon) { return 1.0 / (1.0 + std::exp(epsilon)); }

double PrivacyConfig::sigma(char sensor) const {
  if (!enabled()) return 0.0;
  double sens = 0.0;
  switch (sensor) {
    case 't': sens = sens_t; break;
    case 'h': sens = sens_h; break;
    case 'g': sens = sens_g; break;
    case 'l': sens = sens_l; break;
    default: return 0.0;
  }
  return gaussian_sigma(sens, epsilon, delta);
}

double PrivacyConfig::motion_flip() const {
  return motion_epsilon > 0 ? flip_rate(motion_epsilon) : 0.0;
}

std::string PrivacyConfig::announce_json() const {
  if (!enabled() && motion_epsilon <= 0) return "null";
  return std::string("{\"mech\":\"gaussian\",\"e\":") + fmt("%.4g", epsilon) +
         ",\"d\":" + fmt("%.4g", delta) + ",\"sens\":{\"t\":" + fmt("%.4g", sens_t) +
         ",\"h\":" + fmt("%.4g", sens_h) + ",\"g\":" + fmt("%.4g", sens_g) +
         ",\"l\":" + fmt("%.4g", sens_l) + "},\"sigma\":{\"t\":" + fmt("%.4g", sigma('t')) +
         ",\"h\":" + fmt("%.4g", sigma('h')) + ",\"g\":" + fmt("%.4g", sigma('g')) +
         ",\"l\":" + fmt("%.4g", sigma('l')) + "},\"gas_bound\":" + fmt("%.4g", gas_bound) +
         ",\"motion\":{\"mech\":\"rr\",\"e\":" + fmt("%.4g", motion_epsilon) +
         ",\"flip\":" + fmt("%.4g", motion_flip()) + "},\"flame\":\"none\"}";
}

double NoiseSource::uniform() {
  uint8_t bytes[8];
  fill_(ctx_, bytes, sizeof(bytes));
  uint64_t bits = 0;
  for (uint8_t b : bytes) bits = (bits << 8) | b;
  bits >>= 11;  // keep 53 bits
  return (static_cast<double>(bits) + 1.0) / 9007199254740992.0;  // 2^53
}

double NoiseSource::gauss() {
  const double u1 = uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
}

ClampRange clamp_range(char sensor) {
  switch (sensor) {
    case 't': return {0.0, 50.0};
    case 'h': return {20.0, 90.0};
    case 'g': return {0.0, 1.0};
    default: return {0.0, 20000.0};
  }
}

Readings privatize(const Readings& raw, const PrivacyConfig& config, NoiseSource& noise) {
  Readings out = raw;
  const char keys[] = {'t', 'h', 'g', 'l'};
  std::optional<double>* fields[] = {&out.t, &out.h, &out.g, &out.l};
  for (int i = 0; i < 4; ++i) {
    std::optional<double>& value = *fields[i];
    if (!value) continue;
    double delta = noise.gauss() * config.sigma(keys[i]);
    if (keys[i] == 'g') delta = std::min(std::max(delta, -config.gas_bound), config.gas_bound);
    value = clamp_to(keys[i], *value + delta);
  }
  const double flip = config.motion_flip();
  if (out.m && flip > 0 && noise.uniform() <= flip) out.m = !*out.m;
  return out;  // flame is never perturbed
}

}  // namespace iotshield
