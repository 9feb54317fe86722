#include "host/tools/cli.hpp"

#include <cerrno>
#include <cstdlib>

#include "engine/error.hpp"

namespace ebm {

Args::Args(int argc, char** argv, const std::set<std::string>& with_value, const std::set<std::string>& switches,
           const std::set<std::string>& repeatable) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" && switches.count("--help")) a = "--help";  // the short form people type first
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string value;
    const size_t eq = a.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    if (switches.count(a)) {
      if (inline_value) user_fail("option ", a, " takes no value");
      values_[a].push_back("1");
    } else if (with_value.count(a)) {
      if (!inline_value) {
        if (i + 1 >= argc) user_fail("option ", a, " needs a value");
        value = argv[++i];
      }
      // Every value is a path, a number or a name: an empty one ("$UNSET_VARIABLE", --npy "") is a mistake,
      // not a request to skip the output or to fall back to a default
      if (value.empty()) user_fail("option ", a, " expects a value, got an empty one");
      if (values_.count(a) && !repeatable.count(a))
        user_fail("option ", a, " given twice (\"", values_[a].back(), "\" and \"", value, "\"); give it once");
      values_[a].push_back(value);
    } else {
      user_fail("unknown option ", a, " (see --help)");
    }
  }
}

std::string Args::str(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second.back();
}

std::vector<std::string> Args::all(const std::string& flag) const {
  auto it = values_.find(flag);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

long long Args::integer(const std::string& flag, long long fallback, long long min, long long max) const {
  if (!has(flag)) return fallback;
  const std::string s = str(flag, "");
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0') user_fail("option ", flag, " expects an integer, got \"", s, "\"");
  if (errno == ERANGE || v < min || v > max) user_fail("option ", flag, " must be in [", min, ", ", max, "], got ", s);
  return v;
}

std::optional<Config> flag_as_key(const Args& a, const std::string& flag, const std::string& key) {
  if (!a.has(flag)) return std::nullopt;
  return config_from_flag(flag, key, a.str(flag, ""));
}

}  // namespace ebm
