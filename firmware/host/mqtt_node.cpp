// A complete IoTShield node on a Linux host: the firmware's portable iotshield::Node (the code
// the ESP32 runs) over MQTT with libmosquitto, its state in files, its readings from a small
// deterministic home. The test suite runs it next to the Python reference node.
//
//   mqtt_node [run] --key HA_PUBLIC.pem [--broker HOST] [--port N] [--username U]
//             [--password P] [--node-id ID] [--interval S] [--state-dir DIR] [--seed N]
//             [--prefix P] [--epsilon E] [--readings FILE]
//
// The options are those of `python -m iotshield_node run` (its defaults too: broker
// 127.0.0.1:1883, node `node-01`, interval 5 s, state in ./.iotshield-node, prefix iotshield,
// epsilon 0.5). The state folder holds what the ESP32 keeps in NVS, in the reference node's
// files where it has them, so either node can take over the other's state:
//   <node>.identity.pem   the P-256 identity, PKCS#8 PEM (made on first start)
//   <node>.counters.json  {"last_sid":N,"last_command_ctr":M}
//   <node>.ha_key.pem     the Home Assistant key a set_ha_key stored (else --key is used)
//
// Readings (before the privacy layer), from the local Unix time shifted by --seed hours:
//   temperature 21 +- 1.5 degrees C over the day (warmest at 15:00), humidity 45 +- 5 %RH,
//   gas 0.05 +- 0.01 over the hour, light: daylight up to 800 lx between 06:00 and 18:00 plus a
//   300 lx lamp from 18:00 to 23:00, motion during the first 20 minutes of every hour between
//   07:00 and 23:00, flame never.
// With --readings FILE the node plays a recording instead, as the reference node's --readings
// does: the "raw" readings of each line `python -m iotshield_node simulate` writes (or one
// reading object per line), one per reading, holding the last. A reboot plays it from the start.
//
// SIGTERM or SIGINT: the node publishes its will message itself, disconnects and exits 0. The
// reboot command re-executes the program.
#include <mosquitto.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

#include "core/node.h"
#include "core/v2.h"

namespace {

constexpr double kPi = 3.14159265358979323846;

std::atomic<bool> stop_requested{false};

void on_signal(int) { stop_requested = true; }

std::string read_file(const std::string& path, bool& found) {
  std::ifstream in(path, std::ios::binary);
  found = static_cast<bool>(in);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// Written to a temporary file first, then renamed: a crash never leaves half a file.
bool write_file(const std::string& path, const std::string& text, bool secret) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return false;
    out << text;
    if (!out.flush()) return false;
  }
  if (secret && ::chmod(tmp.c_str(), 0600) != 0) return false;
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

void der_length(std::string& out, size_t len) {
  if (len < 0x80) {
    out += static_cast<char>(len);
  } else if (len < 0x100) {
    out += static_cast<char>(0x81);
    out += static_cast<char>(len);
  } else {
    out += static_cast<char>(0x82);
    out += static_cast<char>(len >> 8);
    out += static_cast<char>(len & 0xff);
  }
}

// mbedTLS writes an EC key as SEC1 ("EC PRIVATE KEY"); the reference node keeps PKCS#8
// ("PRIVATE KEY"), which wraps the same SEC1 structure with the algorithm's identifiers.
std::string sec1_pem_to_pkcs8_pem(const std::string& sec1_pem) {
  const std::string begin = "-----BEGIN EC PRIVATE KEY-----";
  const std::string end = "-----END EC PRIVATE KEY-----";
  const size_t b = sec1_pem.find(begin);
  const size_t e = sec1_pem.find(end);
  if (b == std::string::npos || e == std::string::npos) return sec1_pem;
  std::string b64;
  for (size_t i = b + begin.size(); i < e; ++i) {
    if (sec1_pem[i] != '\n' && sec1_pem[i] != '\r') b64 += sec1_pem[i];
  }
  std::string sec1;
  if (!iotshield::base64_decode(b64, sec1)) return sec1_pem;
  // version 0, AlgorithmIdentifier {id-ecPublicKey, prime256v1}, OCTET STRING {SEC1}
  static const unsigned char kHead[] = {0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a,
                                        0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
                                        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
  std::string body(reinterpret_cast<const char*>(kHead), sizeof(kHead));
  body += '\x04';
  der_length(body, sec1.size());
  body += sec1;
  std::string der = "\x30";
  der_length(der, body.size());
  der += body;
  const std::string text =
      iotshield::base64_encode(reinterpret_cast<const unsigned char*>(der.data()), der.size());
  std::string pem = "-----BEGIN PRIVATE KEY-----\n";
  for (size_t i = 0; i < text.size(); i += 64) pem += text.substr(i, 64) + "\n";
  return pem + "-----END PRIVATE KEY-----\n";
}

// The ESP32's NVS as files in the state folder (see the comment at the top).
class FileStorage : public iotshield::Storage {
 public:
  FileStorage(const std::string& dir, const std::string& node_id)
      : base_(dir + "/" + node_id), counters_path_(base_ + ".counters.json") {
    bool found = false;
    const std::string doc = read_file(counters_path_, found);
    if (found) {
      last_sid_ = static_cast<uint32_t>(number_after(doc, "\"last_sid\""));
      last_command_ctr_ = number_after(doc, "\"last_command_ctr\"");
    }
  }

  std::string get_string(const char* key, const std::string& fallback) override {
    bool found = false;
    const std::string text = read_file(path_of(key), found);
    return found && !text.empty() ? text : fallback;
  }
  void put_string(const char* key, const std::string& value) override {
    const bool identity = std::strcmp(key, "identity") == 0;
    const std::string text = identity ? sec1_pem_to_pkcs8_pem(value) : value;
    if (!write_file(path_of(key), text, identity)) {
      std::fprintf(stderr, "cannot store %s in %s\n", key, path_of(key).c_str());
    }
  }
  uint32_t get_u32(const char* key, uint32_t fallback) override {
    return std::strcmp(key, "sid") == 0 ? last_sid_ : fallback;
  }
  void put_u32(const char* key, uint32_t value) override {
    if (std::strcmp(key, "sid") == 0) {
      last_sid_ = value;
      save_counters();
    }
  }
  uint64_t get_u64(const char* key, uint64_t fallback) override {
    return std::strcmp(key, "cmd_ctr") == 0 ? last_command_ctr_ : fallback;
  }
  void put_u64(const char* key, uint64_t value) override {
    if (std::strcmp(key, "cmd_ctr") == 0) {
      last_command_ctr_ = value;
      save_counters();
    }
  }

 private:
  static uint64_t number_after(const std::string& doc, const char* name) {
    size_t i = doc.find(name);
    if (i == std::string::npos) return 0;
    i = doc.find(':', i);
    if (i == std::string::npos) return 0;
    return std::strtoull(doc.c_str() + i + 1, nullptr, 10);
  }

  std::string path_of(const char* key) const {
    return base_ + (std::strcmp(key, "identity") == 0 ? ".identity.pem" : ".ha_key.pem");
  }

  void save_counters() {
    const std::string doc = "{\"last_sid\": " + std::to_string(last_sid_) +
                            ", \"last_command_ctr\": " + std::to_string(last_command_ctr_) + "}";
    if (!write_file(counters_path_, doc, false)) {
      std::fprintf(stderr, "cannot store the counters in %s\n", counters_path_.c_str());
    }
  }

  std::string base_;
  std::string counters_path_;
  uint32_t last_sid_ = 0;
  uint64_t last_command_ctr_ = 0;
};

class HostClock : public iotshield::Clock {
 public:
  uint32_t millis() override {
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    return static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count());
  }
  uint32_t unix_time() override { return static_cast<uint32_t>(std::time(nullptr)); }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// The host's entropy (mbedTLS's platform sources), seeding the node's own CTR-DRBG.
class HostEntropy : public iotshield::RandomSource {
 public:
  HostEntropy() { mbedtls_entropy_init(&entropy_); }
  ~HostEntropy() override { mbedtls_entropy_free(&entropy_); }
  HostEntropy(const HostEntropy&) = delete;
  HostEntropy& operator=(const HostEntropy&) = delete;
  void fill(uint8_t* out, size_t len) override {
    // The DRBG asks for at most a few dozen bytes at a time, within one entropy block.
    while (len > 0) {
      const size_t chunk = len < MBEDTLS_ENTROPY_BLOCK_SIZE ? len : MBEDTLS_ENTROPY_BLOCK_SIZE;
      if (mbedtls_entropy_func(&entropy_, out, chunk) != 0) std::abort();
      out += chunk;
      len -= chunk;
    }
  }

 private:
  mbedtls_entropy_context entropy_;
};

class MosquittoPublisher : public iotshield::Publisher {
 public:
  explicit MosquittoPublisher(mosquitto* mosq) : mosq_(mosq) {}
  void publish(const std::string& topic, const std::string& payload, int qos,
               bool retain) override {
    int mid = 0;
    const int rc = mosquitto_publish(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()),
                                     payload.data(), qos, retain);
    if (rc != MOSQ_ERR_SUCCESS) {
      std::fprintf(stderr, "publish on %s failed: %s\n", topic.c_str(), mosquitto_strerror(rc));
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    last_mid_ = mid;
  }
  void set_will(const std::string& topic, const std::string& payload) override {
    mosquitto_will_set(mosq_, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1,
                       true);
  }
  void subscribe(const std::string& topic, int qos) override {
    mosquitto_subscribe(mosq_, nullptr, topic.c_str(), qos);
  }
  void acknowledged(int mid) {
    std::lock_guard<std::mutex> lock(mutex_);
    acked_mid_ = mid;
    acked_.notify_all();
  }
  // Waits until the broker acknowledged the last message published (QoS 1), or `seconds`.
  void flush(int seconds) {
    std::unique_lock<std::mutex> lock(mutex_);
    acked_.wait_for(lock, std::chrono::seconds(seconds),
                    [this] { return last_mid_ == 0 || acked_mid_ == last_mid_; });
  }

 private:
  mosquitto* mosq_;
  std::mutex mutex_;
  std::condition_variable acked_;
  int last_mid_ = 0;
  int acked_mid_ = 0;
};

// The deterministic home of the comment at the top.
class HomeSensors : public iotshield::Sensors {
 public:
  HomeSensors(iotshield::Clock& clock, long seed) : clock_(clock), shift_(seed * 3600L) {}
  iotshield::Readings read() override {
    const long now = static_cast<long>(clock_.unix_time()) + shift_;
    const std::time_t local_now = static_cast<std::time_t>(now);
    std::tm local{};
    localtime_r(&local_now, &local);
    const double hour = local.tm_hour + local.tm_min / 60.0 + local.tm_sec / 3600.0;
    iotshield::Readings r;
    r.t = 21.0 + 1.5 * std::sin(2 * kPi * (hour - 9.0) / 24.0);
    r.h = 45.0 + 5.0 * std::cos(2 * kPi * hour / 24.0);
    r.g = 0.05 + 0.01 * std::sin(2 * kPi * (now % 3600) / 3600.0);
    double lux = hour >= 6 && hour < 18 ? 800.0 * std::sin(kPi * (hour - 6.0) / 12.0) : 0.0;
    if (hour >= 18 && hour < 23) lux += 300.0;
    r.l = lux;
    r.f = false;
    r.m = local.tm_hour >= 7 && local.tm_hour < 23 && local.tm_min < 20;
    return r;
  }

 private:
  iotshield::Clock& clock_;
  long shift_;
};

// A key's value in a flat JSON object: a finite number, true/false, or null (also when absent).
enum class Kind { kNumber, kFlag };
bool recorded_value(const std::string& object, const char* key, Kind kind,
                    std::optional<double>& number, std::optional<bool>& flag) {
  number.reset();
  flag.reset();
  size_t i = object.find(std::string("\"") + key + "\"");
  if (i == std::string::npos) return true;
  i = object.find_first_not_of(" \t", i + std::strlen(key) + 2);
  if (i == std::string::npos || object[i] != ':') return false;
  i = object.find_first_not_of(" \t", i + 1);
  if (i == std::string::npos) return false;
  if (object.compare(i, 4, "null") == 0) return true;
  if (kind == Kind::kFlag) {
    if (object.compare(i, 4, "true") == 0) {
      flag = true;
    } else if (object.compare(i, 5, "false") == 0) {
      flag = false;
    } else {
      return false;
    }
    return true;
  }
  const char* start = object.c_str() + i;
  char* end = nullptr;
  const double value = std::strtod(start, &end);
  if (end == start || !std::isfinite(value)) return false;
  number = value;
  return true;
}

// One line of `python -m iotshield_node simulate` output (its "raw" readings) or a bare
// reading object; the same format the reference node's --readings plays.
bool parse_recorded_line(const std::string& line, iotshield::Readings& r) {
  std::string object = line;
  const size_t raw = line.find("\"raw\"");
  if (raw != std::string::npos) {
    const size_t open = line.find('{', raw);
    const size_t close = open == std::string::npos ? open : line.find('}', open);
    if (close == std::string::npos) return false;
    object = line.substr(open, close - open + 1);
  }
  const size_t first = object.find_first_not_of(" \t");
  const size_t last = object.find_last_not_of(" \t\r");
  if (first == std::string::npos || object[first] != '{' || object[last] != '}') return false;
  std::optional<double> number;
  std::optional<bool> flag;
  const char* numbers[] = {"t", "h", "g", "l"};
  std::optional<double>* targets[] = {&r.t, &r.h, &r.g, &r.l};
  for (size_t k = 0; k < 4; ++k) {
    if (!recorded_value(object, numbers[k], Kind::kNumber, number, flag)) return false;
    *targets[k] = number;
  }
  if (!recorded_value(object, "f", Kind::kFlag, number, flag)) return false;
  r.f = flag;
  if (!recorded_value(object, "m", Kind::kFlag, number, flag)) return false;
  r.m = flag;
  return true;
}

constexpr size_t kMaxRecordingLines = 1000000;

// Plays recorded readings in order, one per reading, then holds the last one.
class RecordedSensors : public iotshield::Sensors {
 public:
  // Empty message on success, else what is wrong and where.
  std::string load(const std::string& path) {
    std::ifstream in(path);
    if (!in) return "cannot read " + path;
    std::string line;
    size_t number = 0;
    while (std::getline(in, line)) {
      ++number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      if (lines_.size() >= kMaxRecordingLines) return path + ": too many readings";
      iotshield::Readings r;
      if (!parse_recorded_line(line, r)) return path + ":" + std::to_string(number) + ": bad reading";
      lines_.push_back(r);
    }
    return lines_.empty() ? path + ": no readings" : "";
  }
  iotshield::Readings read() override {
    const iotshield::Readings r = lines_[next_ < lines_.size() ? next_ : lines_.size() - 1];
    ++next_;
    return r;
  }

 private:
  std::vector<iotshield::Readings> lines_;
  size_t next_ = 0;
};

class HostSystem : public iotshield::System {
 public:
  void log(const std::string& line) override {
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }
  void restart() override { restart_requested = true; }
  std::atomic<bool> restart_requested{false};
};

struct Options {
  std::string broker = "127.0.0.1";
  int port = 1883;
  std::string username;
  std::string password;
  std::string key;
  std::string node_id = "node-01";
  uint32_t interval = 5;
  std::string state_dir = ".iotshield-node";
  long seed = 1;
  std::string prefix = "iotshield";
  double epsilon = 0.5;
  std::string readings;
};

bool parse(int argc, char** argv, Options& o) {
  int i = 1;
  if (i < argc && std::strcmp(argv[i], "run") == 0) ++i;
  for (; i < argc; i += 2) {
    if (i + 1 >= argc) return false;
    const std::string name = argv[i];
    const char* value = argv[i + 1];
    if (name == "--broker") {
      o.broker = value;
    } else if (name == "--port") {
      o.port = std::atoi(value);
    } else if (name == "--username") {
      o.username = value;
    } else if (name == "--password") {
      o.password = value;
    } else if (name == "--key") {
      o.key = value;
    } else if (name == "--node-id") {
      o.node_id = value;
    } else if (name == "--interval") {
      const long interval = std::atol(value);
      if (interval < 1 || interval > 86400) return false;
      o.interval = static_cast<uint32_t>(interval);
    } else if (name == "--state-dir") {
      o.state_dir = value;
    } else if (name == "--seed") {
      o.seed = std::atol(value);
    } else if (name == "--prefix") {
      o.prefix = value;
    } else if (name == "--epsilon") {
      o.epsilon = std::strtod(value, nullptr);
    } else if (name == "--readings") {
      o.readings = value;
    } else {
      return false;
    }
  }
  return !o.key.empty();
}

struct Links {
  iotshield::Node* node = nullptr;
  MosquittoPublisher* publisher = nullptr;
  // A command wakes the main loop at once, as the ESP32's loop() runs continuously.
  std::mutex wake_mutex;
  std::condition_variable wake;
  bool woken = false;
};

void on_connect(mosquitto*, void* ctx, int rc) {
  if (rc != 0) {
    std::fprintf(stderr, "the broker refused the connection: %s\n",
                 mosquitto_connack_string(rc));
    return;
  }
  static_cast<Links*>(ctx)->node->on_connected();
}

void on_disconnect(mosquitto*, void* ctx, int) {
  // Runs on the network thread before it reconnects, so the next CONNECT carries the new will.
  static_cast<Links*>(ctx)->node->on_disconnected();
}

void on_message(mosquitto*, void* ctx, const mosquitto_message* msg) {
  if (msg->topic == nullptr) return;
  const std::string payload(static_cast<const char*>(msg->payload),
                            msg->payload == nullptr ? 0 : static_cast<size_t>(msg->payloadlen));
  Links* links = static_cast<Links*>(ctx);
  links->node->on_message(msg->topic, payload);
  {
    std::lock_guard<std::mutex> lock(links->wake_mutex);
    links->woken = true;
  }
  links->wake.notify_one();
}

void on_publish(mosquitto*, void* ctx, int mid) {
  static_cast<Links*>(ctx)->publisher->acknowledged(mid);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse(argc, argv, options)) {
    std::fprintf(stderr, "usage: see the comment at the top of firmware/host/mqtt_node.cpp\n");
    return 2;
  }
  bool found = false;
  const std::string key_pem = read_file(options.key, found);
  if (!found) {
    std::fprintf(stderr, "cannot read %s\n", options.key.c_str());
    return 2;
  }
  if (::mkdir(options.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "cannot make %s\n", options.state_dir.c_str());
    return 1;
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  mosquitto_lib_init();
  Links links;
  const std::string client_id = "iotshield-node-" + options.node_id;
  mosquitto* mosq = mosquitto_new(client_id.c_str(), true, &links);
  if (mosq == nullptr) return 1;
  if (!options.username.empty()) {
    mosquitto_username_pw_set(mosq, options.username.c_str(), options.password.c_str());
  }
  mosquitto_reconnect_delay_set(mosq, 1, 60, true);

  iotshield::NodeConfig config;
  config.node_id = options.node_id;
  config.prefix = options.prefix;
  config.default_ha_key_pem = key_pem;
  config.interval_s = options.interval;
  config.privacy.epsilon = options.epsilon;
  FileStorage storage(options.state_dir, options.node_id);
  HostClock clock;
  HostEntropy entropy;
  iotshield::DrbgRandom random(entropy);
  if (random.seed() != 0) return 1;
  MosquittoPublisher publisher(mosq);
  HomeSensors home(clock, options.seed);
  RecordedSensors recording;
  if (!options.readings.empty()) {
    const std::string error = recording.load(options.readings);
    if (!error.empty()) {
      std::fprintf(stderr, "cannot play --readings: %s\n", error.c_str());
      return 2;
    }
  }
  iotshield::Sensors& sensors = options.readings.empty()
                                    ? static_cast<iotshield::Sensors&>(home)
                                    : static_cast<iotshield::Sensors&>(recording);
  HostSystem system;
  iotshield::Node node(config, storage, clock, random, publisher, sensors, system);
  links.node = &node;
  links.publisher = &publisher;
  if (node.begin() != 0) return 1;

  mosquitto_connect_callback_set(mosq, on_connect);
  mosquitto_disconnect_callback_set(mosq, on_disconnect);
  mosquitto_message_callback_set(mosq, on_message);
  mosquitto_publish_callback_set(mosq, on_publish);
  int rc = mosquitto_connect_async(mosq, options.broker.c_str(), options.port, 60);
  if (rc != MOSQ_ERR_SUCCESS) {
    std::fprintf(stderr, "cannot reach the broker: %s\n", mosquitto_strerror(rc));
  }
  rc = mosquitto_loop_start(mosq);
  if (rc != MOSQ_ERR_SUCCESS) {
    std::fprintf(stderr, "cannot start the MQTT thread: %s\n", mosquitto_strerror(rc));
    return 1;
  }
  while (!stop_requested && !system.restart_requested) {
    node.loop();
    std::unique_lock<std::mutex> lock(links.wake_mutex);
    links.wake.wait_for(lock, std::chrono::milliseconds(20), [&links] { return links.woken; });
    links.woken = false;
  }
  if (!system.restart_requested) node.stop();
  publisher.flush(5);
  mosquitto_disconnect(mosq);
  mosquitto_loop_stop(mosq, false);
  mosquitto_destroy(mosq);
  mosquitto_lib_cleanup();
  if (system.restart_requested) {
    execv("/proc/self/exe", argv);
    std::perror("cannot restart");
    return 1;
  }
  return 0;
}
