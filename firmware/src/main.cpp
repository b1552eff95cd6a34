// IoTShield node: the thin Arduino layer around the portable core in src/core/.
// Reads the six sensors, applies the privacy layer, and publishes over MQTT with QoS 1 and a
// last will as firmware/PROTOCOL.md specifies: wire format v2 (signed sessions, AES-GCM data,
// signed commands) unless WIRE_FORMAT_V1 is set for a Home Assistant paired as v1.
#include <Arduino.h>
#include <DHT.h>
#include <Preferences.h>
#include <WiFi.h>
#include <esp_idf_version.h>
#include <esp_system.h>
#include <mqtt_client.h>
#include <time.h>

#if __has_include(<esp_random.h>)
#include <esp_random.h>
#endif

#include <atomic>
#include <cmath>
#include <mutex>
#include <cstdlib>
#include <cstring>
#include <string>

#include "config.h"
#include "core/privacy.h"
#include "core/telemetry.h"
#include "core/v2.h"

namespace {

constexpr const char* kFirmwareVersion = "1.0.0";
const std::string kStatusTopic = std::string(TOPIC_PREFIX) + "/" + NODE_ID + "/status";
const std::string kDataTopic = std::string(TOPIC_PREFIX) + "/" + NODE_ID + "/sensors/data";
const std::string kCommandTopic =
    std::string(TOPIC_PREFIX) + "/" + NODE_ID + "/control/commands";

#ifdef WIRE_FORMAT_V1
constexpr bool kV2 = false;
#else
constexpr bool kV2 = true;
#endif
constexpr uint32_t kRotateAfterMessages = 10000;
constexpr uint32_t kRotateAfterMs = 24UL * 3600UL * 1000UL;

DHT dht(PIN_DHT, DHT11);
Preferences nvs;  // identity, counters and a rotated Home Assistant key survive reboots
iotshield::Sealer sealer;
iotshield::Identity identity;
iotshield::SessionSender session;
uint32_t session_opened_ms = 0;
uint64_t last_command_ctr = 0;
std::mutex pending_mutex;
std::string pending_ha_key;  // set by a verified set_ha_key, applied in loop()
iotshield::PrivacyConfig privacy;
esp_mqtt_client_handle_t mqtt = nullptr;
std::string announce_message;

// Set from the MQTT task, read in loop().
std::atomic<bool> connected{false};
std::atomic<bool> publish_now{false};
std::atomic<bool> need_session{true};
std::atomic<bool> reboot_requested{false};
std::atomic<uint32_t> interval_s{PUBLISH_INTERVAL_S};
uint32_t seq = 0;
uint32_t last_publish_ms = 0;

// The ESP32's hardware RNG is a true random source while the radio is on.
void hardware_random(void*, uint8_t* out, size_t len) { esp_fill_random(out, len); }
int mbed_random(void*, unsigned char* out, size_t len) {
  esp_fill_random(out, len);
  return 0;
}
iotshield::NoiseSource noise(hardware_random, nullptr);

std::string build_announce() {
  return iotshield::announce_json(NODE_ID, kFirmwareVersion, interval_s.load(), &privacy,
                                  sealer.fingerprint(), kV2 ? identity.public_der_b64() : "");
}

void reannounce() {
  announce_message = build_announce();
  esp_mqtt_client_publish(mqtt, kStatusTopic.c_str(), announce_message.c_str(), 0, 1, 1);
}

// v2: runs only commands Home Assistant signed for this node with a new counter (section 11).
void handle_signed_command(const char* data, int len) {
  iotshield::Command command;
  const auto verdict =
      iotshield::verify_command(std::string(data, len), sealer, NODE_ID, last_command_ctr, command);
  if (verdict != iotshield::CommandVerdict::kOk) {
    Serial.printf("refused a command (%d)\n", static_cast<int>(verdict));
    return;
  }
  last_command_ctr = command.ctr;
  nvs.putULong64("cmd_ctr", last_command_ctr);
  if (command.cmd == "publish_now") {
    publish_now = true;
  } else if (command.cmd == "set_interval" && command.interval >= 1 && command.interval <= 86400) {
    interval_s = static_cast<uint32_t>(command.interval);
    reannounce();
    publish_now = true;
  } else if (command.cmd == "set_epsilon" && command.epsilon >= 0 && command.epsilon <= 100) {
    privacy.epsilon = command.epsilon;
    reannounce();
  } else if (command.cmd == "open_session") {
    need_session = true;
    publish_now = true;
  } else if (command.cmd == "reboot") {
    reboot_requested = true;
  } else if (command.cmd == "set_ha_key" && !command.key.empty()) {
    std::lock_guard<std::mutex> lock(pending_mutex);
    pending_ha_key = command.key;
  }
}

// Applies a new Home Assistant key from set_ha_key: stored, re-announced, new session.
void apply_pending_key() {
  std::string key;
  {
    std::lock_guard<std::mutex> lock(pending_mutex);
    key.swap(pending_ha_key);
  }
  if (key.empty()) return;
  std::string pem = "-----BEGIN PUBLIC KEY-----\n";
  for (size_t i = 0; i < key.size(); i += 64) pem += key.substr(i, 64) + "\n";
  pem += "-----END PUBLIC KEY-----\n";
  iotshield::Sealer candidate;
  if (candidate.load_public_key(pem) != 0) {
    Serial.println("set_ha_key: not an RSA public key, kept the old one");
    return;
  }
  sealer.load_public_key(pem);
  nvs.putString("ha_key", pem.c_str());
  Serial.printf("Home Assistant key rotated, fingerprint %s\n", sealer.fingerprint().c_str());
  reannounce();
  need_session = true;
}

void handle_command(const char* data, int len) {
  // Commands are tiny JSON objects; v1 accepts publish_now and set_interval.
  const std::string text(data, len);
  if (text.find("\"publish_now\"") != std::string::npos) {
    publish_now = true;
  } else if (text.find("\"set_interval\"") != std::string::npos) {
    const size_t key = text.find("\"interval\"");
    const size_t colon = key == std::string::npos ? key : text.find(':', key);
    if (colon == std::string::npos) return;
    const long value = std::strtol(text.c_str() + colon + 1, nullptr, 10);
    if (value >= 1 && value <= 86400) {
      interval_s = static_cast<uint32_t>(value);
      announce_message = build_announce();
      esp_mqtt_client_publish(mqtt, kStatusTopic.c_str(), announce_message.c_str(), 0, 1, 1);
      publish_now = true;
    }
  }
}

void on_mqtt_event(void*, esp_event_base_t, int32_t event_id, void* event_data) {
  auto* event = static_cast<esp_mqtt_event_handle_t>(event_data);
  switch (static_cast<esp_mqtt_event_id_t>(event_id)) {
    case MQTT_EVENT_CONNECTED:
      connected = true;
      need_session = true;  // every (re)connect opens a new session (section 9)
      esp_mqtt_client_publish(mqtt, kStatusTopic.c_str(), announce_message.c_str(), 0, 1, 1);
      esp_mqtt_client_subscribe(mqtt, kCommandTopic.c_str(), 1);
      Serial.println("MQTT connected, announced");
      break;
    case MQTT_EVENT_DISCONNECTED:
      connected = false;  // esp-mqtt reconnects by itself
      break;
    case MQTT_EVENT_DATA:
      if (event->topic_len == static_cast<int>(kCommandTopic.size()) &&
          std::strncmp(event->topic, kCommandTopic.c_str(), event->topic_len) == 0) {
        if (kV2) {
          handle_signed_command(event->data, event->data_len);
        } else {
          handle_command(event->data, event->data_len);
        }
      }
      break;
    default:
      break;
  }
}

void start_mqtt() {
  esp_mqtt_client_config_t cfg = {};
#if ESP_IDF_VERSION_MAJOR >= 5
  cfg.broker.address.uri = MQTT_URI;
  cfg.credentials.username = MQTT_USERNAME;
  cfg.credentials.authentication.password = MQTT_PASSWORD;
  cfg.credentials.client_id = "iotshield-node-" NODE_ID;
  cfg.session.keepalive = 60;
  cfg.session.last_will.topic = kStatusTopic.c_str();
  cfg.session.last_will.msg = "offline";
  cfg.session.last_will.qos = 1;
  cfg.session.last_will.retain = 1;
#else
  cfg.uri = MQTT_URI;
  cfg.username = MQTT_USERNAME;
  cfg.password = MQTT_PASSWORD;
  cfg.client_id = "iotshield-node-" NODE_ID;
  cfg.keepalive = 60;
  cfg.lwt_topic = kStatusTopic.c_str();
  cfg.lwt_msg = "offline";
  cfg.lwt_qos = 1;
  cfg.lwt_retain = 1;
#endif
  mqtt = esp_mqtt_client_init(&cfg);
  esp_mqtt_client_register_event(mqtt, static_cast<esp_mqtt_event_id_t>(ESP_EVENT_ANY_ID),
                                 on_mqtt_event, nullptr);
  esp_mqtt_client_start(mqtt);
}

std::optional<double> read_gas() {
  if (millis() < MQ2_WARMUP_S * 1000UL) return std::nullopt;  // the heater is still warming up
  const double raw = analogRead(PIN_MQ2);
  const double level =
      (raw - MQ2_CLEAN_AIR_RAW) / static_cast<double>(MQ2_SATURATION_RAW - MQ2_CLEAN_AIR_RAW);
  return std::min(std::max(level, 0.0), 1.0);
}

std::optional<double> read_lux() {
  const double volts = analogReadMilliVolts(PIN_LDR) / 1000.0;
  if (volts <= 0.001) return 20000.0;  // no voltage across the fixed resistor: blinding light
  if (volts >= 3.299) return 0.0;
  // LDR on the 3.3 V side: R_ldr = R_fixed * (3.3 - V) / V; lux from the LDR's power law.
  const double r_ldr = LDR_FIXED_OHMS * (3.3 - volts) / volts;
  return 10.0 * std::pow(LDR_R10_OHMS / r_ldr, 1.0 / LDR_GAMMA);
}

iotshield::Readings read_sensors() {
  iotshield::Readings r;
  const float t = dht.readTemperature();
  const float h = dht.readHumidity();
  if (!std::isnan(t)) r.t = t;
  if (!std::isnan(h)) r.h = h;
  r.g = read_gas();
  r.l = read_lux();
  const int flame = digitalRead(PIN_FLAME);
  r.f = FLAME_ACTIVE_LOW ? flame == LOW : flame == HIGH;
  r.m = digitalRead(PIN_PIR) == HIGH;
  return r;
}

uint32_t unix_time() {
  const time_t now = time(nullptr);
  return now > 1700000000 ? static_cast<uint32_t>(now) : 0;  // 0 until NTP has answered
}

void open_session() {
  // The session id must rise for the node's whole life, so it is stored before it is used.
  const uint32_t sid = nvs.getULong("sid", 0) + 1;
  nvs.putULong("sid", sid);
  std::string message;
  if (session.open(NODE_ID, sid, sealer, identity, mbed_random, nullptr, message) != 0) {
    Serial.println("could not open a session");
    return;
  }
  esp_mqtt_client_publish(mqtt, kDataTopic.c_str(), message.c_str(), message.size(), 1, 0);
  session_opened_ms = millis();
  need_session = false;
}

void publish_reading() {
  const iotshield::Readings noised = iotshield::privatize(read_sensors(), privacy, noise);
  const std::string plaintext =
      iotshield::encode_telemetry(NODE_ID, seq++, unix_time(), noised, &privacy);
  std::string envelope;
  int rc = 0;
  if (kV2) {
    if (need_session || session.ctr() >= kRotateAfterMessages ||
        millis() - session_opened_ms >= kRotateAfterMs) {
      open_session();
    }
    rc = session.seal(NODE_ID, plaintext, envelope);
  } else {
    rc = sealer.seal_v1(plaintext, mbed_random, nullptr, envelope);
  }
  if (rc != 0) {
    Serial.printf("encryption failed: %d\n", rc);
    return;
  }
  esp_mqtt_client_publish(mqtt, kDataTopic.c_str(), envelope.c_str(), envelope.size(), 1, 0);
}

}  // namespace

void setup() {
  Serial.begin(115200);
  pinMode(PIN_FLAME, INPUT);
  pinMode(PIN_PIR, INPUT);
  analogReadResolution(12);
  dht.begin();

  privacy.epsilon = PRIVACY_EPSILON;
  privacy.delta = PRIVACY_DELTA;
  privacy.sens_t = PRIVACY_SENS_T;
  privacy.sens_h = PRIVACY_SENS_H;
  privacy.sens_g = PRIVACY_SENS_G;
  privacy.sens_l = PRIVACY_SENS_L;
  privacy.gas_bound = PRIVACY_GAS_BOUND;
  privacy.motion_epsilon = PRIVACY_MOTION_EPSILON;

  nvs.begin("iotshield");
  // A key rotated by set_ha_key replaces the one compiled in.
  const String stored_key = nvs.getString("ha_key", HA_PUBLIC_KEY_PEM);
  if (sealer.load_public_key(stored_key.c_str()) != 0) {
    Serial.println("HA_PUBLIC_KEY_PEM is not an RSA public key: fix include/config.h");
    for (;;) delay(1000);
  }
  Serial.printf("node %s, Home Assistant key fingerprint %s\n", NODE_ID,
                sealer.fingerprint().c_str());
  if (kV2) {
    const String pem = nvs.getString("identity", "");
    if (pem.length() == 0 || identity.load_pem(pem.c_str(), mbed_random, nullptr) != 0) {
      identity.generate(mbed_random, nullptr);  // first start: this node's own key pair
      nvs.putString("identity", identity.private_pem().c_str());
    }
    last_command_ctr = nvs.getULong64("cmd_ctr", 0);
    // Pairing: compare this with the fingerprint the Home Assistant wizard shows.
    Serial.printf("node identity key (node_key): %s\n", identity.public_der_b64().c_str());
  }
  announce_message = build_announce();

  WiFi.mode(WIFI_STA);
  WiFi.setAutoReconnect(true);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  while (WiFi.status() != WL_CONNECTED) delay(250);
  Serial.printf("Wi-Fi connected: %s\n", WiFi.localIP().toString().c_str());
  if (std::strlen(NTP_SERVER) > 0) configTime(0, 0, NTP_SERVER);
  start_mqtt();
}

void loop() {
  if (reboot_requested) {
    delay(200);  // let the MQTT ack leave
    ESP.restart();
  }
  apply_pending_key();
  const uint32_t now = millis();
  if (connected && (publish_now.exchange(false) || now - last_publish_ms >= interval_s * 1000UL)) {
    last_publish_ms = now;
    publish_reading();
  }
  delay(20);
}
