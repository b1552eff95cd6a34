// IoTShield node configuration. Copy to include/config.h (git-ignored) and fill in.
#pragma once

// ---- Network -------------------------------------------------------------------------------
#define WIFI_SSID "your-wifi"
#define WIFI_PASSWORD "your-wifi-password"
// The broker Home Assistant's MQTT integration uses (Mosquitto add-on: port 1883).
#define MQTT_URI "mqtt://192.168.1.10:1883"
#define MQTT_USERNAME "iotshield-kitchen"
#define MQTT_PASSWORD "broker-password"
// Time for the readings' timestamps. Your router often serves NTP; "" sends t = 0.
#define NTP_SERVER "192.168.1.1"

// ---- Identity ------------------------------------------------------------------------------
// Lowercase letters, digits, - and _, at most 32 characters; the same id as in Home Assistant.
#define NODE_ID "kitchen"
#define TOPIC_PREFIX "iotshield"
#define PUBLISH_INTERVAL_S 5

// Home Assistant's public key for this node, exactly as the IoTShield setup wizard shows it.
#define HA_PUBLIC_KEY_PEM \
  "-----BEGIN PUBLIC KEY-----\n" \
  "paste the lines of the key here, each followed by \\n\n" \
  "-----END PUBLIC KEY-----\n"

// ---- Wire format ---------------------------------------------------------------------------
// v2 (signed, replay-protected) is the default. Only for a node paired as v1 in Home Assistant:
// #define WIRE_FORMAT_V1

// ---- Privacy (firmware/PROTOCOL.md section 7) ---------------------------------------------
#define PRIVACY_EPSILON 0.5        // 0 turns the Gaussian noise off
#define PRIVACY_DELTA 1e-5
#define PRIVACY_SENS_T 0.1         // degrees C
#define PRIVACY_SENS_H 0.25        // %RH
#define PRIVACY_SENS_G 0.002       // gas level
#define PRIVACY_SENS_L 5.0         // lx
#define PRIVACY_GAS_BOUND 0.03     // largest gas noise; 0 turns it off
#define PRIVACY_MOTION_EPSILON 2.0 // randomized response; 0 turns it off

// ---- Pins (ESP32-WROOM-32 DevKit; analog inputs on ADC1, which works with Wi-Fi on) ------
#define PIN_DHT 4
#define PIN_MQ2 34      // MQ-2 AO through a 2:1 divider (the module runs at 5 V)
#define PIN_FLAME 27    // IR flame module DO
#define FLAME_ACTIVE_LOW 1
#define PIN_PIR 14      // HC-SR501 OUT
#define PIN_LDR 35      // LDR to 3.3 V, fixed resistor to GND, middle to the pin

// ---- Calibration ---------------------------------------------------------------------------
// MQ-2: the raw ADC reading (0..4095) in clean air after warm-up, and where it saturates.
#define MQ2_CLEAN_AIR_RAW 300
#define MQ2_SATURATION_RAW 3500
#define MQ2_WARMUP_S 60
// LDR: the fixed resistor, the LDR's resistance at 10 lx and its gamma (GL5528: ~10k, 0.7).
#define LDR_FIXED_OHMS 10000.0
#define LDR_R10_OHMS 10000.0
#define LDR_GAMMA 0.7
