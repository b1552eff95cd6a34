// IoTShield node on the ESP32: only the Arduino glue around the portable node in src/core/.
// The node itself (commands, sessions, key rotation, the will token, the announce, what
// survives a reboot) is iotshield::Node in core/node.cpp, the same code the test suite runs on
// the host; this file wires it to the pins, Wi-Fi, the esp-mqtt client, NVS and the sensors.
// It speaks wire format v2 revision 1 (firmware/PROTOCOL.md) unless WIRE_FORMAT_V1 is set for a
// Home Assistant paired as v1.
//
// Threads: esp-mqtt calls on_mqtt_event from its own task; the node's on_* methods are safe
// there (they set flags, queue commands and swap the last will). loop() runs the node.
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
#include <cmath>
#include <cstring>
#include <optional>
#include <string>

#include "config.h"
#include "core/node.h"
#include "core/privacy.h"

namespace {

#ifdef WIRE_FORMAT_V1
constexpr bool kV2 = false;
#else
constexpr bool kV2 = true;
#endif
// A revision-1 session message may be 2048 bytes (PROTOCOL.md 12.1); esp-mqtt's default
// 1024-byte buffers would split it, so both directions get room for it and its header.
constexpr int kMqttBufferBytes = 2560;

DHT dht(PIN_DHT, DHT11);

// Identity, counters and a rotated Home Assistant key survive reboots in NVS.
class NvsStorage : public iotshield::Storage {
 public:
  void begin() { nvs_.begin("iotshield"); }
  std::string get_string(const char* key, const std::string& fallback) override {
    const String value = nvs_.getString(key, fallback.c_str());
    return value.c_str();
  }
  void put_string(const char* key, const std::string& value) override {
    nvs_.putString(key, value.c_str());
  }
  uint32_t get_u32(const char* key, uint32_t fallback) override {
    return nvs_.getULong(key, fallback);
  }
  void put_u32(const char* key, uint32_t value) override { nvs_.putULong(key, value); }
  uint64_t get_u64(const char* key, uint64_t fallback) override {
    return nvs_.getULong64(key, fallback);
  }
  void put_u64(const char* key, uint64_t value) override { nvs_.putULong64(key, value); }

 private:
  Preferences nvs_;
};

class BoardClock : public iotshield::Clock {
 public:
  uint32_t millis() override { return ::millis(); }
  uint32_t unix_time() override {
    const time_t now = time(nullptr);
    return now > 1700000000 ? static_cast<uint32_t>(now) : 0;  // 0 until NTP has answered
  }
};

// The ESP32's hardware RNG is a true random source while the radio is on.
class HardwareRandom : public iotshield::RandomSource {
 public:
  void fill(uint8_t* out, size_t len) override { esp_fill_random(out, len); }
};

class EspMqtt : public iotshield::Publisher {
 public:
  void publish(const std::string& topic, const std::string& payload, int qos,
               bool retain) override {
    esp_mqtt_client_publish(mqtt, topic.c_str(), payload.c_str(), payload.size(), qos,
                            retain ? 1 : 0);
  }
  // Runs before the first connect and, in the MQTT task, on every disconnect: esp-mqtt
  // reconnects only after its reconnect delay, and builds each CONNECT from the stored config.
  void set_will(const std::string& topic, const std::string& payload) override {
    will_topic = topic;
    will_payload = payload;
#if ESP_IDF_VERSION_MAJOR >= 5
    mqtt_cfg.session.last_will.topic = will_topic.c_str();
    mqtt_cfg.session.last_will.msg = will_payload.c_str();
#else
    mqtt_cfg.lwt_topic = will_topic.c_str();
    mqtt_cfg.lwt_msg = will_payload.c_str();
#endif
    // esp-mqtt copies the message; its API lock is recursive, so this is safe in its own task.
    if (mqtt != nullptr) esp_mqtt_set_config(mqtt, &mqtt_cfg);
  }
  void subscribe(const std::string& topic, int qos) override {
    esp_mqtt_client_subscribe(mqtt, topic.c_str(), qos);
  }

  esp_mqtt_client_handle_t mqtt = nullptr;
  esp_mqtt_client_config_t mqtt_cfg = {};  // kept: a new last will is applied through it
  std::string will_topic;
  std::string will_payload;
};

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

class BoardSensors : public iotshield::Sensors {
 public:
  iotshield::Readings read() override {
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
};

class Board : public iotshield::System {
 public:
  void log(const std::string& line) override { Serial.printf("[iotshield] %s\n", line.c_str()); }
  void restart() override {
    delay(500);  // let the command's ack and the status leave
    ESP.restart();
  }
};

NvsStorage storage;
BoardClock board_clock;
HardwareRandom hardware_random;
// Every key, token and nonce of the node comes from this, seeded once the radio runs.
iotshield::DrbgRandom drbg(hardware_random);
EspMqtt client;
BoardSensors sensors;
Board board;

iotshield::NodeConfig node_config() {
  iotshield::NodeConfig config;
  config.node_id = NODE_ID;
  config.prefix = TOPIC_PREFIX;
  config.firmware = "1.1.0";
  config.default_ha_key_pem = HA_PUBLIC_KEY_PEM;
  config.interval_s = PUBLISH_INTERVAL_S;
  config.privacy.epsilon = PRIVACY_EPSILON;
  config.privacy.delta = PRIVACY_DELTA;
  config.privacy.sens_t = PRIVACY_SENS_T;
  config.privacy.sens_h = PRIVACY_SENS_H;
  config.privacy.sens_g = PRIVACY_SENS_G;
  config.privacy.sens_l = PRIVACY_SENS_L;
  config.privacy.gas_bound = PRIVACY_GAS_BOUND;
  config.privacy.motion_epsilon = PRIVACY_MOTION_EPSILON;
  config.v2 = kV2;
  return config;
}

iotshield::Node node(node_config(), storage, board_clock, drbg, client, sensors,
                     board);

void on_mqtt_event(void*, esp_event_base_t, int32_t event_id, void* event_data) {
  auto* event = static_cast<esp_mqtt_event_handle_t>(event_data);
  switch (static_cast<esp_mqtt_event_id_t>(event_id)) {
    case MQTT_EVENT_CONNECTED:
      node.on_connected();
      break;
    case MQTT_EVENT_DISCONNECTED:
      node.on_disconnected();  // esp-mqtt reconnects by itself, with the will set here
      break;
    case MQTT_EVENT_DATA:
      if (event->total_data_len != event->data_len) {
        Serial.println("ignored a message larger than the MQTT buffer");
        break;
      }
      node.on_message(std::string(event->topic, event->topic_len),
                      std::string(event->data, event->data_len));
      break;
    default:
      break;
  }
}

// The client's settings; the node sets the last will (its topic and message) in begin().
void configure_mqtt(esp_mqtt_client_config_t& mqtt_cfg) {
#if ESP_IDF_VERSION_MAJOR >= 5
  mqtt_cfg.broker.address.uri = MQTT_URI;
  mqtt_cfg.credentials.username = MQTT_USERNAME;
  mqtt_cfg.credentials.authentication.password = MQTT_PASSWORD;
  mqtt_cfg.credentials.client_id = "iotshield-node-" NODE_ID;
  mqtt_cfg.session.keepalive = 60;
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
  mqtt_cfg.lwt_qos = 1;
  mqtt_cfg.lwt_retain = 1;
  mqtt_cfg.buffer_size = kMqttBufferBytes;
  mqtt_cfg.out_buffer_size = kMqttBufferBytes;
#endif
}

void start_mqtt() {
  esp_mqtt_client_handle_t mqtt = esp_mqtt_client_init(&client.mqtt_cfg);
  client.mqtt = mqtt;
  esp_mqtt_client_register_event(mqtt, static_cast<esp_mqtt_event_id_t>(ESP_EVENT_ANY_ID),
                                 on_mqtt_event, nullptr);
  esp_mqtt_client_start(mqtt);
}

}  // namespace

void setup() {
  Serial.begin(115200);
  pinMode(PIN_FLAME, INPUT);
  pinMode(PIN_PIR, INPUT);
  analogReadResolution(12);
  dht.begin();
  storage.begin();
  configure_mqtt(client.mqtt_cfg);

  // The radio first: esp_fill_random is a true random source only while Wi-Fi (or Bluetooth)
  // runs, and the identity key, session keys and will tokens all come from it.
  WiFi.mode(WIFI_STA);
  WiFi.setAutoReconnect(true);
  if (drbg.seed() != 0) {
    Serial.println("cannot seed the random generator");
    for (;;) delay(1000);
  }
  if (node.begin() != 0) {
    Serial.println("HA_PUBLIC_KEY_PEM is not an RSA key of at least 2048 bits: fix include/config.h");
    for (;;) delay(1000);
  }

  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  while (WiFi.status() != WL_CONNECTED) delay(250);
  Serial.printf("Wi-Fi connected: %s\n", WiFi.localIP().toString().c_str());
  if (std::strlen(NTP_SERVER) > 0) configTime(0, 0, NTP_SERVER);
  start_mqtt();
}

void loop() {
  node.loop();
  delay(20);
}
