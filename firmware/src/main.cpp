// IoTShield node: the thin Arduino layer around the portable core in src/core/.
// Reads the six sensors, applies the privacy layer, and publishes over MQTT with QoS 1 and a
// last will as firmware/PROTOCOL.md specifies: wire format v2 revision 1 (signed sessions with
// the node's settings, constant-length AES-GCM data, an authenticated last will, signed
// commands bound to the session) unless WIRE_FORMAT_V1 is set for a Home Assistant paired as v1.
//
// Threads: esp-mqtt calls on_mqtt_event from its own task. That task only sets flags, queues
// command messages and swaps the last will; everything that touches the core's state (keys,
// sessions, counters, the challenge) runs in loop().
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

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>

#include "config.h"
#include "core/privacy.h"
#include "core/telemetry.h"
#include "core/v2.h"

namespace {

constexpr const char* kFirmwareVersion = "1.1.0";
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
// Every attempt to open a session writes a new session id to flash, so failures wait.
constexpr uint32_t kSessionRetryMs = 5000;
// A revision-1 session message may be 2048 bytes (PROTOCOL.md 12.1); esp-mqtt's default
// 1024-byte buffers would split it, so both directions get room for it and its header.
constexpr int kMqttBufferBytes = 2560;
// Commands wait here for loop(); Home Assistant sends a few at most, more are dropped.
constexpr size_t kMaxQueuedCommands = 4;

DHT dht(PIN_DHT, DHT11);
Preferences nvs;  // identity, counters and a rotated Home Assistant key survive reboots
iotshield::Sealer sealer;
iotshield::Identity identity;
iotshield::SessionSender session;
iotshield::SessionRequests session_requests;  // open_session: challenge and rate (RAM only)
uint32_t session_opened_ms = 0;
bool need_session = true;
bool session_failed = false;
uint32_t session_failed_ms = 0;
uint64_t last_command_ctr = 0;
uint32_t interval_s = PUBLISH_INTERVAL_S;
iotshield::PrivacyConfig privacy;
esp_mqtt_client_handle_t mqtt = nullptr;
esp_mqtt_client_config_t mqtt_cfg = {};  // kept: a new last will is applied through it
std::string announce_message;
uint32_t seq = 0;
uint32_t last_publish_ms = 0;

// Shared with the MQTT task.
std::atomic<bool> connected{false};
std::atomic<bool> just_connected{false};
std::atomic<bool> publish_now{false};
// Lock order: esp-mqtt's API lock, then will_mutex (renew_will runs holding the former), so
// loop() never calls esp-mqtt while it holds will_mutex.
std::mutex will_mutex;
iotshield::WillToken will;  // the last will of the current (or next) connection
std::mutex command_mutex;
std::deque<std::string> queued_commands;

// The ESP32's hardware RNG is a true random source while the radio is on.
void hardware_random(void*, uint8_t* out, size_t len) { esp_fill_random(out, len); }
int mbed_random(void*, unsigned char* out, size_t len) {
  esp_fill_random(out, len);
  return 0;
}
iotshield::NoiseSource noise(hardware_random, nullptr);

std::string build_announce() {
  return iotshield::announce_json(NODE_ID, kFirmwareVersion, interval_s, &privacy,
                                  sealer.fingerprint(), kV2 ? identity.public_der_b64() : "");
}

void publish_status(const std::string& message) {
  esp_mqtt_client_publish(mqtt, kStatusTopic.c_str(), message.c_str(), message.size(), 1, 1);
}

void reannounce() {
  announce_message = build_announce();
  publish_status(announce_message);
}

// Section 12.2: a new will token for the next connection, set as the client's last will.
// Runs before the first connect and, in the MQTT task, on every disconnect: esp-mqtt
// reconnects only after its reconnect delay, and builds each CONNECT from the stored config.
void renew_will() {
  iotshield::WillToken next;
  if (iotshield::new_will(NODE_ID, mbed_random, nullptr, next) != 0) return;
  std::lock_guard<std::mutex> lock(will_mutex);
  will = next;
#if ESP_IDF_VERSION_MAJOR >= 5
  mqtt_cfg.session.last_will.msg = will.payload.c_str();
#else
  mqtt_cfg.lwt_msg = will.payload.c_str();
#endif
  // esp-mqtt copies the message; its API lock is recursive, so this is safe in its own task.
  if (mqtt != nullptr) esp_mqtt_set_config(mqtt, &mqtt_cfg);
}

void open_session() {
  iotshield::SessionInfo info;
  info.challenge = session_requests.challenge();
  info.firmware = kFirmwareVersion;
  info.interval = interval_s;
  info.privacy = privacy.announce_json();
  info.key_fp = sealer.fingerprint();
  {
    std::lock_guard<std::mutex> lock(will_mutex);
    info.will = will.hash;
  }
  // The session id must rise for the node's whole life, so it is stored before it is used.
  const uint32_t sid = nvs.getULong("sid", 0) + 1;
  nvs.putULong("sid", sid);
  std::string message;
  if (session.open(NODE_ID, sid, info, sealer, identity, mbed_random, nullptr, message) != 0) {
    Serial.println("could not open a session");
    session_failed = true;
    session_failed_ms = millis();
    return;
  }
  esp_mqtt_client_publish(mqtt, kDataTopic.c_str(), message.c_str(), message.size(), 1, 0);
  session_opened_ms = millis();
  session_failed = false;
  need_session = false;
}

// Applies a new Home Assistant key from set_ha_key: stored, re-announced, new session.
void apply_ha_key(const std::string& key) {
  std::string pem = "-----BEGIN PUBLIC KEY-----\n";
  for (size_t i = 0; i < key.size(); i += 64) pem += key.substr(i, 64) + "\n";
  pem += "-----END PUBLIC KEY-----\n";
  // The core swaps the key only when the new one loads; only then is it stored.
  if (sealer.load_public_key(pem) != 0) {
    Serial.println("set_ha_key: not an RSA public key, kept the old one");
    return;
  }
  nvs.putString("ha_key", pem.c_str());
  Serial.printf("Home Assistant key rotated, fingerprint %s\n", sealer.fingerprint().c_str());
  reannounce();
  need_session = true;
}

void reboot() {
  // Section 12.2: a node that stops cleanly sends its own last will.
  std::string payload;
  {
    std::lock_guard<std::mutex> lock(will_mutex);
    payload = will.payload;
  }
  publish_status(payload);
  delay(500);  // let the command's ack and the status leave
  ESP.restart();
}

// v2: runs only commands Home Assistant signed for this node with a new counter that name
// this node's current or previous session (sections 11 and 12.5; the core decides).
void handle_signed_command(const std::string& text) {
  iotshield::Command command;
  const auto verdict = iotshield::verify_command(text, sealer, NODE_ID, last_command_ctr,
                                                 session.tags(), command);
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
    need_session = true;  // Home Assistant takes the interval only from a signed session
    publish_now = true;
  } else if (command.cmd == "set_epsilon" && command.epsilon >= 0 && command.epsilon <= 100) {
    privacy.epsilon = command.epsilon;
    reannounce();
    need_session = true;  // likewise the privacy parameters
  } else if (command.cmd == "open_session") {
    session_requests.request(command);  // opened by loop(), at most once a second
  } else if (command.cmd == "reboot") {
    reboot();
  } else if (command.cmd == "set_ha_key" && !command.key.empty()) {
    apply_ha_key(command.key);
  }
}

void handle_queued_commands() {
  for (;;) {
    std::string text;
    {
      std::lock_guard<std::mutex> lock(command_mutex);
      if (queued_commands.empty()) return;
      text.swap(queued_commands.front());
      queued_commands.pop_front();
    }
    handle_signed_command(text);
  }
}

// v1 commands are unauthenticated, so only the harmless one exists (PROTOCOL.md section 8).
void handle_v1_command(const char* data, int len) {
  if (std::string(data, len).find("\"publish_now\"") != std::string::npos) publish_now = true;
}

void on_mqtt_event(void*, esp_event_base_t, int32_t event_id, void* event_data) {
  auto* event = static_cast<esp_mqtt_event_handle_t>(event_data);
  switch (static_cast<esp_mqtt_event_id_t>(event_id)) {
    case MQTT_EVENT_CONNECTED:
      connected = true;
      just_connected = true;  // loop() announces, opens a session and subscribes, in order
      break;
    case MQTT_EVENT_DISCONNECTED:
      connected = false;  // esp-mqtt reconnects by itself, with the will set here
      if (kV2) renew_will();
      break;
    case MQTT_EVENT_DATA:
      if (event->topic_len != static_cast<int>(kCommandTopic.size()) ||
          std::strncmp(event->topic, kCommandTopic.c_str(), event->topic_len) != 0) {
        break;
      }
      if (event->total_data_len != event->data_len) {
        Serial.println("ignored a command larger than the MQTT buffer");
        break;
      }
      if (!kV2) {
        handle_v1_command(event->data, event->data_len);
        break;
      }
      {
        std::lock_guard<std::mutex> lock(command_mutex);
        if (queued_commands.size() < kMaxQueuedCommands) {
          queued_commands.emplace_back(event->data, event->data_len);
        }
      }
      break;
    default:
      break;
  }
}

void start_mqtt() {
#if ESP_IDF_VERSION_MAJOR >= 5
  mqtt_cfg.broker.address.uri = MQTT_URI;
  mqtt_cfg.credentials.username = MQTT_USERNAME;
  mqtt_cfg.credentials.authentication.password = MQTT_PASSWORD;
  mqtt_cfg.credentials.client_id = "iotshield-node-" NODE_ID;
  mqtt_cfg.session.keepalive = 60;
  mqtt_cfg.session.last_will.topic = kStatusTopic.c_str();
  mqtt_cfg.session.last_will.msg = "offline";
  mqtt_cfg.session.last_will.qos = 1;
  mqtt_cfg.session.last_will.retain = 1;
  mqtt_cfg.buffer.size = kMqttBufferBytes;
  mqtt_cfg.buffer.out_size = kMqttBufferBytes;
#else
  mqtt_cfg.uri = MQTT_URI;
  mqtt_cfg.username = MQTT_USERNAME;
  mqtt_cfg.password = MQTT_PASSWORD;
  mqtt_cfg.client_id = "iotshield-node-" NODE_ID;
  mqtt_cfg.keepalive = 60;
  mqtt_cfg.lwt_topic = kStatusTopic.c_str();
  mqtt_cfg.lwt_msg = "offline";
  mqtt_cfg.lwt_qos = 1;
  mqtt_cfg.lwt_retain = 1;
  mqtt_cfg.buffer_size = kMqttBufferBytes;
  mqtt_cfg.out_buffer_size = kMqttBufferBytes;
#endif
  if (kV2) renew_will();  // the first connection's will (a v1 node keeps plain "offline")
  mqtt = esp_mqtt_client_init(&mqtt_cfg);
  esp_mqtt_client_register_event(mqtt, static_cast<esp_mqtt_event_id_t>(ESP_EVENT_ANY_ID),
                                 on_mqtt_event, nullptr);
  esp_mqtt_client_start(mqtt);
}

// Section 12.6 step 2: announce, then a session, then commands.
void on_connected() {
  publish_status(announce_message);
  if (kV2) open_session();
  esp_mqtt_client_subscribe(mqtt, kCommandTopic.c_str(), 1);
  Serial.println("MQTT connected, announced");
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

void publish_reading() {
  const iotshield::Readings noised = iotshield::privatize(read_sensors(), privacy, noise);
  const std::string plaintext =
      iotshield::encode_telemetry(NODE_ID, seq++, unix_time(), noised, &privacy);
  std::string envelope;
  // v2: the core pads to the session's length and refuses what does not fit (section 12.4).
  const int rc = kV2 ? session.seal(NODE_ID, plaintext, envelope)
                     : sealer.seal_v1(plaintext, mbed_random, nullptr, envelope);
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

  // The radio first: esp_fill_random is a true random source only while Wi-Fi (or Bluetooth)
  // runs, and the identity key, session keys and will tokens all come from it.
  WiFi.mode(WIFI_STA);
  WiFi.setAutoReconnect(true);
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

  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  while (WiFi.status() != WL_CONNECTED) delay(250);
  Serial.printf("Wi-Fi connected: %s\n", WiFi.localIP().toString().c_str());
  if (std::strlen(NTP_SERVER) > 0) configTime(0, 0, NTP_SERVER);
  start_mqtt();
}

void loop() {
  if (kV2) handle_queued_commands();
  if (!connected) {
    delay(20);
    return;
  }
  if (just_connected.exchange(false)) on_connected();
  const uint32_t now = millis();
  if (kV2) {
    if (session_requests.due(now)) {
      need_session = true;
      publish_now = true;  // open_session: a session and a reading at once
    }
    const bool may_try = !session_failed || now - session_failed_ms >= kSessionRetryMs;
    if (may_try && (need_session || session.ctr() >= kRotateAfterMessages ||
                    now - session_opened_ms >= kRotateAfterMs)) {
      open_session();
    }
  }
  if (publish_now.exchange(false) || now - last_publish_ms >= interval_s * 1000UL) {
    last_publish_ms = now;
    publish_reading();
  }
  delay(20);
}
