// Test stand-in for esp-mqtt's mqtt_client.h as ESP-IDF 4.4 and 5.x ship it: the
// configuration's two layouts, the event type and the calls main.cpp makes.
#pragma once

#include <cstdint>

#include "esp_err.h"
#include "esp_event.h"
#include "esp_idf_version.h"

typedef struct esp_mqtt_client* esp_mqtt_client_handle_t;

typedef enum esp_mqtt_event_id_t {
  MQTT_EVENT_ANY = -1,
  MQTT_EVENT_ERROR = 0,
  MQTT_EVENT_CONNECTED,
  MQTT_EVENT_DISCONNECTED,
  MQTT_EVENT_SUBSCRIBED,
  MQTT_EVENT_UNSUBSCRIBED,
  MQTT_EVENT_PUBLISHED,
  MQTT_EVENT_DATA,
  MQTT_EVENT_BEFORE_CONNECT,
  MQTT_EVENT_DELETED,
} esp_mqtt_event_id_t;

typedef struct esp_mqtt_event_t {
  esp_mqtt_event_id_t event_id;
  esp_mqtt_client_handle_t client;
#if ESP_IDF_VERSION_MAJOR < 5
  void* user_context;
#endif
  char* data;
  int data_len;
  int total_data_len;
  int current_data_offset;
  char* topic;
  int topic_len;
  int msg_id;
  int session_present;
  bool retain;
  int qos;
  bool dup;
} esp_mqtt_event_t;
typedef esp_mqtt_event_t* esp_mqtt_event_handle_t;

#if ESP_IDF_VERSION_MAJOR >= 5
// ESP-IDF 5: the configuration is grouped by topic.
typedef struct esp_mqtt_client_config_t {
  struct broker_t {
    struct address_t {
      const char* uri;
    } address;
  } broker;
  struct credentials_t {
    const char* username;
    const char* client_id;
    struct authentication_t {
      const char* password;
    } authentication;
  } credentials;
  struct session_t {
    struct last_will_t {
      const char* topic;
      const char* msg;
      int msg_len;
      int qos;
      int retain;
    } last_will;
    int keepalive;
  } session;
  struct buffer_t {
    int size;
    int out_size;
  } buffer;
} esp_mqtt_client_config_t;
#else
// ESP-IDF 4: one flat structure.
typedef struct esp_mqtt_client_config_t {
  const char* uri;
  const char* client_id;
  const char* username;
  const char* password;
  const char* lwt_topic;
  const char* lwt_msg;
  int lwt_qos;
  int lwt_retain;
  int lwt_msg_len;
  int keepalive;
  int buffer_size;
  int out_buffer_size;
} esp_mqtt_client_config_t;
#endif

inline esp_mqtt_client_handle_t esp_mqtt_client_init(const esp_mqtt_client_config_t*) {
  return nullptr;
}
inline esp_err_t esp_mqtt_set_config(esp_mqtt_client_handle_t, const esp_mqtt_client_config_t*) {
  return ESP_OK;
}
inline esp_err_t esp_mqtt_client_start(esp_mqtt_client_handle_t) { return ESP_OK; }
inline esp_err_t esp_mqtt_client_register_event(esp_mqtt_client_handle_t, esp_mqtt_event_id_t,
                                                esp_event_handler_t, void*) {
  return ESP_OK;
}
inline int esp_mqtt_client_publish(esp_mqtt_client_handle_t, const char*, const char*, int, int,
                                   int) {
  return 0;
}

#if ESP_IDF_VERSION_MAJOR >= 5
// ESP-IDF 5.1 made subscribe a macro; in C++ it names the single-topic function.
inline int esp_mqtt_client_subscribe_single(esp_mqtt_client_handle_t, const char*, int) {
  return 0;
}
#define esp_mqtt_client_subscribe esp_mqtt_client_subscribe_single
#else
inline int esp_mqtt_client_subscribe(esp_mqtt_client_handle_t, const char*, int) { return 0; }
#endif
