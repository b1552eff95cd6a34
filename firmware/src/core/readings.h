// One set of sensor readings (PROTOCOL.md section 4); portable, no Arduino dependency.
#pragma once

#include <optional>

namespace iotshield {

struct Readings {
  std::optional<double> t;  // temperature, degrees C
  std::optional<double> h;  // relative humidity, %RH
  std::optional<double> g;  // MQ-2 gas level, calibrated 0..1
  std::optional<double> l;  // illuminance, lx
  std::optional<bool> f;    // IR flame
  std::optional<bool> m;    // PIR motion
};

}  // namespace iotshield
