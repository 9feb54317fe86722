// libFuzzer target: run configs (host/io/config.cpp) through config_from_text with --set overrides.
// Input: the config file's text, then any number of "\n--set " each followed by one override
// ("dotted.key=value"), e.g.
//   {"train": {"lr": 3e-4}}
//   --set model.channels=[32,64]
//   --set output_dir=runs/x
// On success the config is a fixed point: its JSON (config_to_json) read back, as a value and as
// text, gives the same config, and so does the defaults with every key set by one --set.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/io/config.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {

using nlohmann::json;
constexpr const char* kSource = "fuzz.json";
constexpr const char* kSet = "\n--set ";

// "a.b=<value as JSON>" for every leaf of `j`.
void leaves_as_overrides(const json& j, const std::string& prefix, std::vector<std::string>& out) {
  for (const auto& [k, v] : j.items()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object())
      leaves_as_overrides(v, key, out);
    else
      out.push_back(key + "=" + v.dump());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  size_t cut = input.find(kSet);
  const std::string text = input.substr(0, cut);
  std::vector<std::string> overrides;
  while (cut != std::string::npos) {
    const size_t start = cut + std::char_traits<char>::length(kSet);
    cut = input.find(kSet, start);
    overrides.push_back(input.substr(start, cut == std::string::npos ? std::string::npos : cut - start));
  }

  ebm::Config c;
  // Messages name the file, or the --set that failed.
  if (!ebm::fuzz::parse("config_from_text", {kSource, "--set"}, [&] { c = ebm::config_from_text(text, kSource, overrides); }))
    return 0;

  json j;
  std::string dumped;
  if (!ebm::fuzz::must_succeed("config_to_json(...).dump()", [&] {
        j = ebm::config_to_json(c);
        dumped = j.dump();  // what a run writes as config.json
      }))
    return 0;
  ebm::Config back;
  if (!ebm::fuzz::must_succeed("config_from_json(config_to_json(c))", [&] { back = ebm::config_from_json(j, "rt"); }))
    return 0;
  FUZZ_CHECK(back == c, "config_from_json(config_to_json(c)) != c");
  if (!ebm::fuzz::must_succeed("config_from_text(config_to_json(c).dump())",
                               [&] { back = ebm::config_from_text(dumped, "rt.json"); }))
    return 0;
  FUZZ_CHECK(back == c, "config_from_text(config_to_json(c).dump()) != c: " + dumped);

  std::vector<std::string> sets;
  leaves_as_overrides(j, "", sets);
  if (!ebm::fuzz::must_succeed("config_from_text(\"{}\", every key as --set)",
                               [&] { back = ebm::config_from_text("{}", "rt.json", sets); }))
    return 0;
  FUZZ_CHECK(back == c, "the defaults with every key --set != c: " + dumped);
  return 0;
}
