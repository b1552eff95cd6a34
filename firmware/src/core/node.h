// The whole IoTShield node (PROTOCOL.md sections 5 and 8-12), portable: command dispatch,
// the session lifecycle, key rotation, the will token of every connection, the announce and
// what survives a reboot. The hardware sits behind the small interfaces below; the ESP32's
// Arduino layer (src/main.cpp) and the host's MQTT node (host/mqtt_node.cpp) wire them up, so
// both run this same code.
//
// Threads: on_connected, on_disconnected and on_message may be called from the MQTT client's
// own thread. They only set flags, queue commands and swap the last will; everything that
// touches keys, sessions and counters runs in loop(), on the caller's thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include <mbedtls/ctr_drbg.h>

#include "privacy.h"
#include "readings.h"
#include "telemetry.h"
#include "v2.h"

namespace iotshield {

// Key-value storage that survives a reboot (ESP32: NVS; host: files in the state folder).
// Keys: "identity" (PEM), "ha_key" (PEM), "sid" (32 bits), "cmd_ctr" (64 bits).
class Storage {
 public:
  virtual ~Storage() = default;
  virtual std::string get_string(const char* key, const std::string& fallback) = 0;
  virtual void put_string(const char* key, const std::string& value) = 0;
  virtual uint32_t get_u32(const char* key, uint32_t fallback) = 0;
  virtual void put_u32(const char* key, uint32_t value) = 0;
  virtual uint64_t get_u64(const char* key, uint64_t fallback) = 0;
  virtual void put_u64(const char* key, uint64_t value) = 0;
};

class Clock {
 public:
  virtual ~Clock() = default;
  virtual uint32_t millis() = 0;     // monotonic milliseconds (may wrap)
  virtual uint32_t unix_time() = 0;  // seconds, 0 while the clock is not synchronised
};

// A cryptographically secure random source; thread-safe (the will is drawn on the MQTT thread).
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  virtual void fill(uint8_t* out, size_t len) = 0;
};

// All of a node's key material comes from this CTR-DRBG, seeded (and reseeded) from an
// entropy source: the ESP32's hardware RNG once the radio runs, the host's entropy on Linux.
class DrbgRandom : public RandomSource {
 public:
  explicit DrbgRandom(RandomSource& entropy);
  ~DrbgRandom() override;
  DrbgRandom(const DrbgRandom&) = delete;
  DrbgRandom& operator=(const DrbgRandom&) = delete;
  // Call once the entropy source is a true random source; 0 on success.
  int seed();
  // Aborts when unseeded or failing: a node must never make a key from weak randomness.
  void fill(uint8_t* out, size_t len) override;

 private:
  static int draw_entropy(void* self, unsigned char* out, size_t len);
  RandomSource& entropy_;
  mbedtls_ctr_drbg_context drbg_;
  std::mutex mutex_;
  bool seeded_ = false;
};

class Publisher {
 public:
  virtual ~Publisher() = default;
  virtual void publish(const std::string& topic, const std::string& payload, int qos,
                       bool retain) = 0;
  // The last will (QoS 1, retained) of the next connection.
  virtual void set_will(const std::string& topic, const std::string& payload) = 0;
  virtual void subscribe(const std::string& topic, int qos) = 0;
};

class Sensors {
 public:
  virtual ~Sensors() = default;
  virtual Readings read() = 0;  // calibrated readings, before the privacy layer
};

class System {
 public:
  virtual ~System() = default;
  virtual void log(const std::string& line) = 0;
  virtual void restart() = 0;  // reboot (the node has already sent its own last will)
};

struct NodeConfig {
  std::string node_id;
  std::string prefix = "iotshield";
  std::string firmware = "1.1.0";
  std::string default_ha_key_pem;  // used until set_ha_key stores another
  uint32_t interval_s = 5;
  PrivacyConfig privacy;
  bool v2 = true;  // false: wire format v1 (RSA-OAEP, only publish_now obeyed)
};

// Rotation (section 9): after this many data messages or this long, a new session.
constexpr uint32_t kRotateAfterMessages = 10000;
constexpr uint32_t kRotateAfterMs = 24UL * 3600UL * 1000UL;
// Every attempt to open a session stores a new session id, so failures wait this long.
constexpr uint32_t kSessionRetryMs = 5000;
// Commands wait for loop(); Home Assistant sends a few at most. More are dropped (and counted
// in the log), so a flood on the command topic costs bounded memory; Home Assistant asks for a
// session again while it has none.
constexpr size_t kMaxQueuedCommands = 8;

class Node {
 public:
  Node(const NodeConfig& config, Storage& storage, Clock& clock, RandomSource& random,
       Publisher& publisher, Sensors& sensors, System& system);
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Loads Home Assistant's key (the stored one, else the default), the identity (made on first
  // start) and the command counter, and sets the first connection's last will. The random
  // source must be ready. 0 on success; non-zero when no usable Home Assistant key exists.
  int begin();

  // MQTT events; any thread.
  void on_connected();
  void on_disconnected();  // draws the next connection's will token and sets it
  void on_message(const std::string& topic, const std::string& payload);

  // The node's work: commands, the connect sequence, sessions and readings. One thread.
  void loop();
  // A clean stop: publishes the current will message itself (section 12.2).
  void stop();

  const std::string& status_topic() const { return status_topic_; }
  const std::string& data_topic() const { return data_topic_; }
  const std::string& command_topic() const { return command_topic_; }
  std::string fingerprint() const { return sealer_.fingerprint(); }
  std::string node_key() { return identity_.public_der_b64(); }
  uint32_t interval() const { return interval_s_; }

 private:
  static int mbed_random(void* ctx, unsigned char* out, size_t len);
  static void noise_random(void* ctx, uint8_t* out, size_t len);

  std::string build_announce();
  void reannounce();
  void renew_will();
  std::string will_payload();
  void connect_sequence();
  void open_session();
  void apply_ha_key(const std::string& key_b64);
  void reboot();
  void handle_command(const std::string& text);
  bool handle_next_command();  // false when none was queued
  void step();  // connect sequence, sessions and readings as they fall due
  void publish_reading();

  NodeConfig config_;
  Storage& storage_;
  Clock& clock_;
  RandomSource& random_;
  Publisher& publisher_;
  Sensors& sensors_;
  System& system_;
  const std::string status_topic_;
  const std::string data_topic_;
  const std::string command_topic_;

  Sealer sealer_;
  Identity identity_;
  SessionSender session_;
  SessionRequests session_requests_;  // open_session: challenge and rate (RAM only)
  NoiseSource noise_;
  uint32_t interval_s_;
  PrivacyConfig privacy_;
  uint64_t last_command_ctr_ = 0;
  uint32_t session_opened_ms_ = 0;
  bool need_session_ = true;
  bool session_failed_ = false;
  uint32_t session_failed_ms_ = 0;
  uint32_t seq_ = 0;
  bool published_once_ = false;
  uint32_t last_publish_ms_ = 0;
  std::string announce_message_;

  // Shared with the MQTT thread.
  std::atomic<bool> connected_{false};
  std::atomic<bool> just_connected_{false};
  std::atomic<bool> publish_now_{false};
  std::mutex will_mutex_;
  WillToken will_;  // the last will of the current (or next) connection
  std::mutex command_mutex_;
  std::deque<std::string> queued_commands_;
  std::atomic<uint32_t> dropped_commands_{0};
};

}  // namespace iotshield
