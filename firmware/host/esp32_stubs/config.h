// Test support: the host build of main.cpp uses the example configuration, never the maker's.
#pragma once
#include "../../include/config.example.h"
