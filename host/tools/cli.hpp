// A small command-line parser shared by the tools: `--flag value`, `--flag=value`, boolean `--flag`,
// positionals; unknown flags and bad numbers are UserErrors naming the flag. A flag that sets what a
// config key holds is read with config_from_flag (config.hpp) instead, so it takes the key's rule.
#pragma once
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "host/io/config.hpp"

namespace ebm {

class Args {
 public:
  // `with_value`: flags that take a value; `switches`: flags that do not; `repeatable`: value flags that
  // may be given more than once (all values kept, e.g. --set). Any other value flag given twice is a
  // UserError (the last one silently winning hides a typo: --resume a --resume b).
  Args(int argc, char** argv, const std::set<std::string>& with_value, const std::set<std::string>& switches = {},
       const std::set<std::string>& repeatable = {});

  bool has(const std::string& flag) const { return values_.count(flag) > 0; }
  std::string str(const std::string& flag, const std::string& fallback) const;
  std::vector<std::string> all(const std::string& flag) const;
  long long integer(const std::string& flag, long long fallback, long long min, long long max) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

// A flag that sets what a config key holds, read and bounded by that key's own rule (config_from_flag):
// --grad-clip 0 is refused exactly as sampler.grad_clip=0 is. The defaults with that key set, or nothing
// when the flag was not given.
std::optional<Config> flag_as_key(const Args& a, const std::string& flag, const std::string& key);

}  // namespace ebm
