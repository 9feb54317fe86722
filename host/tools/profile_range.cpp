#include "host/tools/profile_range.hpp"

#include <cstdlib>

#include "engine/error.hpp"

namespace ebm {

StepRange parse_step_range(const std::string& s) {
  const size_t colon = s.find(':');
  auto bad = [&](const char* why) { user_fail("--profile-steps \"", s, "\": ", why, " (expected A:B with 0 <= A < B, e.g. 20:30)"); };
  if (colon == std::string::npos) bad("no ':'");
  if (s.find_first_not_of("0123456789:") != std::string::npos) bad("only digits and one ':' are allowed");
  const std::string a = s.substr(0, colon), b = s.substr(colon + 1);
  char* end = nullptr;
  if (a.empty() || b.empty()) bad("missing a number");
  const long long x = std::strtoll(a.c_str(), &end, 10);
  if (*end) bad("A is not an integer");
  const long long y = std::strtoll(b.c_str(), &end, 10);
  if (*end) bad("B is not an integer");
  if (x < 0) bad("A is negative");
  if (y <= x) bad("B must be greater than A");
  if (y > 2147483647LL) bad("B is too large");
  return {x, y};
}

}  // namespace ebm
