#include "node.h"

#include <cstdlib>

#include <cstdio>

namespace iotshield {

namespace {

// "1a2b3c4d…" as "1a2b 3c4d …", the wizard's way of showing a fingerprint.
std::string group_fours(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 4) {
    if (i > 0) out += ' ';
    out += hex.substr(i, 4);
  }
  return out;
}

std::string format(const char* fmt, long value) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), fmt, value);
  return buf;
}

}  // namespace

Node::Node(const NodeConfig& config, Storage& storage, Clock& clock, RandomSource& random,
           Publisher& publisher, Sensors& sensors, System& system)
    : config_(config),
      storage_(storage),
      clock_(clock),
      random_(random),
      publisher_(publisher),
      sensors_(sensors),
      system_(system),
      status_topic_(config.prefix + "/" + config.node_id + "/status"),
      data_topic_(config.prefix + "/" + config.node_id + "/sensors/data"),
      command_topic_(config.prefix + "/" + config.node_id + "/control/commands"),
      noise_(noise_random, &random),
      interval_s_(config.interval_s),
      privacy_(config.privacy) {}

int Node::mbed_random(void* ctx, unsigned char* out, size_t len) {
  static_cast<RandomSource*>(ctx)->fill(out, len);
  return 0;
}

void Node::noise_random(void* ctx, uint8_t* out, size_t len) {
  static_cast<RandomSource*>(ctx)->fill(out, len);
}

int Node::begin() {
  // A key rotated by set_ha_key replaces the default one.
  const std::string stored = storage_.get_string("ha_key", "");
  if (stored.empty() || sealer_.load_public_key(stored) != 0) {
    const int rc = sealer_.load_public_key(config_.default_ha_key_pem);
    if (rc != 0) {
      system_.log("the Home Assistant key is not an RSA public key of at least 2048 bits");
      return rc;
    }
  }
  // Grouped in fours as the wizard shows them, so that a person can compare them by eye.
  system_.log("node " + config_.node_id + ", Home Assistant key fingerprint " +
              group_fours(sealer_.fingerprint()));
  if (config_.v2) {
    const std::string pem = storage_.get_string("identity", "");
    if (pem.empty() || identity_.load_pem(pem, mbed_random, &random_) != 0) {
      // First start: this node's own key pair.
      const int rc = identity_.generate(mbed_random, &random_);
      if (rc != 0) {
        system_.log("could not make the node's identity key");
        return rc;
      }
      storage_.put_string("identity", identity_.private_pem());
    }
    last_command_ctr_ = storage_.get_u64("cmd_ctr", 0);
    // Pairing: compare this with the fingerprint the Home Assistant wizard shows.
    system_.log("node identity key (node_key): " + identity_.public_der_b64());
    system_.log("node identity fingerprint: " + group_fours(identity_.fingerprint()));
    renew_will();  // the first connection's will
  } else {
    publisher_.set_will(status_topic_, "offline");
  }
  announce_message_ = build_announce();
  return 0;
}

std::string Node::build_announce() {
  return announce_json(config_.node_id, config_.firmware, interval_s_, &privacy_,
                       sealer_.fingerprint(), config_.v2 ? identity_.public_der_b64() : "");
}

void Node::reannounce() {
  announce_message_ = build_announce();
  publisher_.publish(status_topic_, announce_message_, 1, true);
}

// Section 12.2: a new will token for the next connection, set as the client's last will.
void Node::renew_will() {
  WillToken next;
  if (new_will(config_.node_id, mbed_random, &random_, next) != 0) return;
  {
    std::lock_guard<std::mutex> lock(will_mutex_);
    will_ = next;
  }
  publisher_.set_will(status_topic_, next.payload);
}

std::string Node::will_payload() {
  if (!config_.v2) return "offline";
  std::lock_guard<std::mutex> lock(will_mutex_);
  return will_.payload;
}

void Node::on_connected() {
  connected_ = true;
  just_connected_ = true;  // loop() announces, opens a session and subscribes, in order
}

void Node::on_disconnected() {
  connected_ = false;  // the client reconnects by itself, with the will set here
  if (config_.v2) renew_will();
}

void Node::on_message(const std::string& topic, const std::string& payload) {
  if (topic != command_topic_) return;
  if (!config_.v2) {
    // v1 commands are unauthenticated, so only the harmless one exists (section 8).
    if (payload.find("\"publish_now\"") != std::string::npos) publish_now_ = true;
    return;
  }
  std::lock_guard<std::mutex> lock(command_mutex_);
  if (queued_commands_.size() < kMaxQueuedCommands) {
    queued_commands_.push_back(payload);
  } else {
    ++dropped_commands_;
  }
}

// Section 12.6 step 2: commands first (the broker handles one connection's packets in order,
// so Home Assistant's answer to the session cannot arrive before the subscription), then the
// announce and a session.
void Node::connect_sequence() {
  publisher_.subscribe(command_topic_, 1);
  publisher_.publish(status_topic_, announce_message_, 1, true);
  if (config_.v2) {
    need_session_ = true;  // every (re)connect opens a new session (section 9)
    open_session();
  }
  system_.log("MQTT connected, announced");
}

void Node::open_session() {
  SessionInfo info;
  info.challenge = session_requests_.challenge();
  info.firmware = config_.firmware;
  info.interval = interval_s_;
  info.privacy = privacy_.announce_json();
  info.key_fp = sealer_.fingerprint();
  {
    std::lock_guard<std::mutex> lock(will_mutex_);
    info.will = will_.hash;
  }
  // The session id must rise for the node's whole life, so it is stored before it is used.
  const uint32_t sid = storage_.get_u32("sid", 0) + 1;
  storage_.put_u32("sid", sid);
  std::string message;
  if (session_.open(config_.node_id, sid, info, sealer_, identity_, mbed_random, &random_,
                    message) != 0) {
    system_.log("could not open a session");
    session_failed_ = true;
    session_failed_ms_ = clock_.millis();
    return;
  }
  publisher_.publish(data_topic_, message, 1, false);
  session_opened_ms_ = clock_.millis();
  session_failed_ = false;
  need_session_ = false;
}

// Applies a new Home Assistant key from set_ha_key: stored, re-announced, new session.
void Node::apply_ha_key(const std::string& key_b64) {
  std::string pem = "-----BEGIN PUBLIC KEY-----\n";
  for (size_t i = 0; i < key_b64.size(); i += 64) pem += key_b64.substr(i, 64) + "\n";
  pem += "-----END PUBLIC KEY-----\n";
  // The core swaps the key only when the new one loads; only then is it stored.
  if (sealer_.load_public_key(pem) != 0) {
    system_.log("set_ha_key: not an RSA public key of at least 2048 bits, kept the old one");
    return;
  }
  storage_.put_string("ha_key", pem);
  system_.log("Home Assistant key rotated, fingerprint " + sealer_.fingerprint());
  reannounce();
  need_session_ = true;
  publish_now_ = true;  // a session and a reading under the new key at once
}

void Node::reboot() {
  // Section 12.2: a node that stops cleanly sends its own last will.
  publisher_.publish(status_topic_, will_payload(), 1, true);
  system_.restart();
}

// v2: runs only commands Home Assistant signed for this node with a new counter that name
// this node's current or previous session (sections 11 and 12.5; verify_command decides).
void Node::handle_command(const std::string& text) {
  Command command;
  const auto verdict = verify_command(text, sealer_, config_.node_id, last_command_ctr_,
                                      session_.tags(), command);
  if (verdict != CommandVerdict::kOk) {
    system_.log(format("refused a command (%ld)", static_cast<long>(verdict)));
    return;
  }
  last_command_ctr_ = command.ctr;
  storage_.put_u64("cmd_ctr", last_command_ctr_);
  system_.log("command " + command.cmd);
  if (command.cmd == "publish_now") {
    publish_now_ = true;
  } else if (command.cmd == "set_interval" && command.interval >= 1 &&
             command.interval <= 86400) {
    interval_s_ = static_cast<uint32_t>(command.interval);
    reannounce();
    need_session_ = true;  // Home Assistant takes the interval only from a signed session
    publish_now_ = true;
  } else if (command.cmd == "set_epsilon" && command.epsilon >= 0 && command.epsilon <= 100) {
    privacy_.epsilon = command.epsilon;
    reannounce();
    need_session_ = true;  // likewise the privacy parameters
    publish_now_ = true;
  } else if (command.cmd == "open_session") {
    session_requests_.request(command);  // opened by loop(), at most once a second
  } else if (command.cmd == "reboot") {
    reboot();
  } else if (command.cmd == "set_ha_key" && !command.key.empty()) {
    apply_ha_key(command.key);
  } else {
    system_.log("ignored command " + command.cmd);
  }
}

bool Node::handle_next_command() {
  std::string text;
  {
    std::lock_guard<std::mutex> lock(command_mutex_);
    if (queued_commands_.empty()) return false;
    text.swap(queued_commands_.front());
    queued_commands_.pop_front();
  }
  handle_command(text);
  return true;
}

void Node::publish_reading() {
  const Readings noised = privatize(sensors_.read(), privacy_, noise_);
  const std::string plaintext =
      encode_telemetry(config_.node_id, seq_++, clock_.unix_time(), noised, &privacy_);
  std::string envelope;
  // v2: the core pads to the session's length and refuses what does not fit (section 12.4).
  const int rc = config_.v2 ? session_.seal(config_.node_id, plaintext, envelope)
                            : sealer_.seal_v1(plaintext, mbed_random, &random_, envelope);
  if (rc != 0) {
    system_.log(format("encryption failed: %ld", static_cast<long>(rc)));
    return;
  }
  publisher_.publish(data_topic_, envelope, 1, false);
}

void Node::loop() {
  // What a command asks for (a session, a reading) is done before the next command is handled,
  // as the reference node does: two open_session requests in a row are answered in order, the
  // first at once and the second a second later (section 12.5). The queue is bounded.
  while (config_.v2 && handle_next_command()) step();
  step();
  const uint32_t dropped = dropped_commands_.exchange(0);
  if (dropped > 0) system_.log(format("command queue full: dropped %ld", static_cast<long>(dropped)));
}

void Node::step() {
  if (!connected_) return;
  if (just_connected_.exchange(false)) connect_sequence();
  const uint32_t now = clock_.millis();
  if (config_.v2) {
    if (session_requests_.due(now)) {
      need_session_ = true;
      publish_now_ = true;  // open_session: a session and a reading at once
    }
    const bool may_try = !session_failed_ || now - session_failed_ms_ >= kSessionRetryMs;
    if (may_try && (need_session_ || session_.ctr() >= kRotateAfterMessages ||
                    now - session_opened_ms_ >= kRotateAfterMs)) {
      open_session();
    }
    if (session_.sid() == 0) return;  // no session yet: nothing can be sealed
  }
  // The first reading goes out as soon as the node is connected, then one every interval.
  if (publish_now_.exchange(false) || !published_once_ ||
      now - last_publish_ms_ >= interval_s_ * 1000UL) {
    published_once_ = true;
    last_publish_ms_ = now;
    publish_reading();
  }
}

void Node::stop() {
  if (connected_) publisher_.publish(status_topic_, will_payload(), 1, true);
}

}  // namespace iotshield

namespace iotshield {

DrbgRandom::DrbgRandom(RandomSource& entropy) : entropy_(entropy) { mbedtls_ctr_drbg_init(&drbg_); }

DrbgRandom::~DrbgRandom() { mbedtls_ctr_drbg_free(&drbg_); }

int DrbgRandom::draw_entropy(void* self, unsigned char* out, size_t len) {
  static_cast<DrbgRandom*>(self)->entropy_.fill(out, len);
  return 0;
}

int DrbgRandom::seed() {
  std::lock_guard<std::mutex> lock(mutex_);
  static const char kPersonalisation[] = "iotshield-node";
  const int rc = mbedtls_ctr_drbg_seed(&drbg_, draw_entropy, this,
                                       reinterpret_cast<const unsigned char*>(kPersonalisation),
                                       sizeof(kPersonalisation) - 1);
  seeded_ = rc == 0;
  return rc;
}

void DrbgRandom::fill(uint8_t* out, size_t len) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!seeded_) std::abort();
  // mbedTLS hands out at most MBEDTLS_CTR_DRBG_MAX_REQUEST bytes per call.
  while (len > 0) {
    const size_t chunk = len < MBEDTLS_CTR_DRBG_MAX_REQUEST ? len : MBEDTLS_CTR_DRBG_MAX_REQUEST;
    if (mbedtls_ctr_drbg_random(&drbg_, out, chunk) != 0) std::abort();
    out += chunk;
    len -= chunk;
  }
}

}  // namespace iotshield
