// Test support: what the stand-ins remember, so a run of main.cpp on the host can check the
// order of its calls (the hardware RNG is only truly random once the radio runs).
#pragma once

namespace stub_state {
inline bool radio_on = false;
}  // namespace stub_state
