// Test stand-in for Arduino-ESP32's Arduino.h: String, Serial, ESP and the pin and time calls
// main.cpp makes, with the signatures Arduino-ESP32 2.x (ESP-IDF 4) and 3.x (ESP-IDF 5) share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#define HIGH 0x1
#define LOW 0x0
#define INPUT 0x01

// Arduino's String does not convert to std::string, so neither does this one.
class String {
 public:
  String() = default;
  // Implicit, as Arduino's is: nvs.getString(key, "literal") relies on it.
  String(const char* text) : text_(text == nullptr ? "" : text) {}
  const char* c_str() const { return text_.c_str(); }
  unsigned int length() const { return static_cast<unsigned int>(text_.size()); }

 private:
  std::string text_;
};

class Print {
 public:
  virtual ~Print() = default;
  // Arduino-ESP32 declares printf with the format attribute, so g++ checks every format.
  size_t printf(const char*, ...) __attribute__((format(printf, 2, 3))) { return 0; }
  size_t println(const char*) { return 0; }
  size_t println(const String&) { return 0; }
};

class HardwareSerial : public Print {
 public:
  void begin(unsigned long) {}
};
inline HardwareSerial Serial;

class EspClass {
 public:
  void restart() {}
};
inline EspClass ESP;

inline void pinMode(uint8_t, uint8_t) {}
inline int digitalRead(uint8_t) { return LOW; }
inline uint16_t analogRead(uint8_t) { return 0; }
inline uint32_t analogReadMilliVolts(uint8_t) { return 0; }
inline void analogReadResolution(uint8_t) {}
inline unsigned long millis() { return 0; }
inline void delay(uint32_t) {}
inline void configTime(long, int, const char*, const char* = nullptr, const char* = nullptr) {}
