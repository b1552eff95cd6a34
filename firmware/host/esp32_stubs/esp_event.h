// Test stand-in for the parts of ESP-IDF's esp_event.h that esp-mqtt's API uses.
#pragma once

#include <cstdint>

#include "esp_err.h"

typedef const char* esp_event_base_t;
typedef void (*esp_event_handler_t)(void* event_handler_arg, esp_event_base_t event_base,
                                    int32_t event_id, void* event_data);
#define ESP_EVENT_ANY_ID -1
