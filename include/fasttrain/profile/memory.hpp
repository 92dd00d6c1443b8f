// fasttrain/profile/memory.hpp -- the process's resident memory and its peak, from Linux's
// /proc/self/status, for measuring what an operation adds at its peak:
//
//   if (profile::reset_peak_resident()) {
//     const long before = profile::resident_kib();
//     save();
//     const long added = profile::peak_resident_kib() - before;   // KiB
//   }
#pragma once

#include <fstream>
#include <string>

namespace fasttrain::profile {

namespace detail {
inline long status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(line.find(':') + 1));
  return -1;
}
}  // namespace detail

/// Resident memory now (VmRSS), in KiB; -1 where /proc/self/status does not say.
inline long resident_kib() { return detail::status_kib("VmRSS:"); }
/// The peak resident memory (VmHWM) since the start or the last reset_peak_resident(), KiB.
inline long peak_resident_kib() { return detail::status_kib("VmHWM:"); }
/// Resets the peak to the current resident memory (writes 5 to /proc/self/clear_refs, Linux
/// 4.0 on); false where that is not possible.
inline bool reset_peak_resident() {
  std::ofstream f("/proc/self/clear_refs");
  return static_cast<bool>(f << "5" << std::flush);
}

}  // namespace fasttrain::profile
