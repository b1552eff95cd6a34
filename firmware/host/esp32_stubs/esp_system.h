// Test stand-in for ESP-IDF's esp_system.h.
#pragma once

#include "esp_idf_version.h"

// ESP-IDF 4 declared the random functions here too; ESP-IDF 5 moved them to esp_random.h only,
// so code built for 5 must include that header itself.
#if ESP_IDF_VERSION_MAJOR < 5
#include "esp_random.h"
#endif
