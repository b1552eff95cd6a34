// Test stand-in for ESP-IDF's esp_random.h (since ESP-IDF 5 the only header that declares it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "stub_state.h"

// Espressif: without Wi-Fi or Bluetooth running (or bootloader_random_enable()) the ESP32's
// RNG is only pseudo-random. Key material drawn before that would be guessable, so the
// stand-in stops the program, and the test that runs main.cpp's setup() fails.
inline void esp_fill_random(void* buf, size_t len) {
  if (!stub_state::radio_on) {
    std::fprintf(stderr, "esp_fill_random before the radio is on\n");
    std::abort();
  }
  auto* bytes = static_cast<uint8_t*>(buf);
  for (size_t i = 0; i < len; ++i) bytes[i] = static_cast<uint8_t>(std::rand());
}
