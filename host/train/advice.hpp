// How a run's messages say what to do next: in ebm_train's flags (--resume DIR, --set key=value), or, for a run
// driven from Python (ebm_engine.Trainer), in the Trainer's arguments (resume="DIR", overrides={"key": value}).
#pragma once
#include <string>

namespace ebm {

struct Advice {
  bool python = false;
  // "--resume DIR" | "resume=\"DIR\"": what continues from a checkpoint, and the prefix of its refusals.
  std::string resume(const std::string& dir) const { return python ? "resume=\"" + dir + "\"" : "--resume " + dir; }
  // "--set key=value" | "overrides={\"key\": value}" (`value` as it would be written in Python: quote strings).
  std::string set(const std::string& key, const std::string& value) const {
    return python ? "overrides={\"" + key + "\": " + value + "}" : "--set " + key + "=" + value;
  }
};

}  // namespace ebm
