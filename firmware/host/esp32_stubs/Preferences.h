// Test stand-in for Arduino-ESP32's Preferences.h (NVS key-value storage).
#pragma once

#include <cstddef>
#include <cstdint>

#include "Arduino.h"

class Preferences {
 public:
  bool begin(const char*, bool = false, const char* = nullptr) { return true; }
  size_t putULong(const char*, uint32_t) { return 4; }
  uint32_t getULong(const char*, uint32_t default_value = 0) { return default_value; }
  size_t putULong64(const char*, uint64_t) { return 8; }
  uint64_t getULong64(const char*, uint64_t default_value = 0) { return default_value; }
  size_t putString(const char*, const char*) { return 0; }
  size_t putString(const char*, String) { return 0; }
  String getString(const char*, String default_value = String()) { return default_value; }
  size_t getString(const char*, char*, size_t) { return 0; }
};
