// Test stand-in for Adafruit's DHT sensor library (DHT.h).
#pragma once

#include <cstdint>

#define DHT11 11

class DHT {
 public:
  DHT(uint8_t, uint8_t, uint8_t = 6) {}
  void begin(uint8_t = 55) {}
  float readTemperature(bool = false, bool = false) { return 0.0f; }
  float readHumidity(bool = false) { return 0.0f; }
};
