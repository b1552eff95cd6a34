// Test stand-in for Arduino-ESP32's WiFi.h: station mode, connect, status and the address.
#pragma once

#include <cstdint>

#include "Arduino.h"
#include "stub_state.h"

typedef enum {
  WIFI_MODE_NULL = 0,
  WIFI_MODE_STA,
  WIFI_MODE_AP,
  WIFI_MODE_APSTA,
} wifi_mode_t;
#define WIFI_STA WIFI_MODE_STA

typedef enum {
  WL_IDLE_STATUS = 0,
  WL_NO_SSID_AVAIL = 1,
  WL_SCAN_COMPLETED = 2,
  WL_CONNECTED = 3,
  WL_CONNECT_FAILED = 4,
  WL_CONNECTION_LOST = 5,
  WL_DISCONNECTED = 6,
} wl_status_t;

class IPAddress {
 public:
  String toString() const { return String("0.0.0.0"); }
};

class WiFiClass {
 public:
  bool mode(wifi_mode_t m) {
    stub_state::radio_on = m != WIFI_MODE_NULL;
    return true;
  }
  bool setAutoReconnect(bool) { return true; }
  wl_status_t begin(const char*, const char* = nullptr, int32_t = 0, const uint8_t* = nullptr,
                    bool = true) {
    return WL_CONNECTED;
  }
  wl_status_t status() { return WL_CONNECTED; }
  IPAddress localIP() { return IPAddress(); }
};
inline WiFiClass WiFi;
