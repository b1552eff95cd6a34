// Test stand-in for ESP-IDF's esp_err.h.
#pragma once

typedef int esp_err_t;
#define ESP_OK 0
