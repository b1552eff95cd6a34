// Test stand-in for ESP-IDF's esp_random.h (since ESP-IDF 5 the only header that declares it).
#pragma once

#include <cstddef>
#include <cstdint>

inline void esp_fill_random(void* buf, size_t len) {
  auto* bytes = static_cast<uint8_t*>(buf);
  for (size_t i = 0; i < len; ++i) bytes[i] = static_cast<uint8_t>(i);
}
