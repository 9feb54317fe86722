// Config loading in two passes: merge the user's JSON onto the defaults, checking every key and type
// against the defaults (which double as the schema); then read the merged tree into the struct,
// checking ranges. Every message names the source and the full dotted key path.
#include "host/io/config.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string_view>

#include "engine/error.hpp"
#include "host/io/input_file.hpp"
#include "host/io/json_text.hpp"

namespace ebm {

using json = nlohmann::json;

namespace {

constexpr int64_t kIntMax = std::numeric_limits<int>::max();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string known_keys(const json& schema, const std::string& path) {
  std::string s = path.empty() ? "known keys: " : "known keys in \"" + path + "\": ";
  bool first = true;
  for (const auto& [k, v] : schema.items()) {
    s += (first ? "" : ", ") + k;
    first = false;
  }
  return s;
}

// Throws unless leaf value `v` has the type of the schema's value `like` (integers are accepted
// where a float is expected, never the other way round: 2.0 for an integer key is an error).
void check_type(const json& v, const json& like, const std::string& path, const std::string& source) {
  auto expected = [&](const char* what) {
    user_fail(source, ": \"", path, "\" must be ", what, ", got ", shown_json(v));
  };
  switch (like.type()) {
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      // JSON readers turn an integer beyond 64 bits (99999999999999999999) into a double: say which bound it broke
      if (v.is_number_float() && std::isfinite(v.get<double>()) && std::floor(v.get<double>()) == v.get<double>() &&
          (v.get<double>() >= (like.is_number_unsigned() ? 0x1p64 : 0x1p63) || v.get<double>() < -0x1p63))
        expected(like.is_number_unsigned() ? "an integer below 2^64" : "an integer that fits in 64 bits");
      if (!v.is_number_integer()) expected("an integer");
      break;
    case json::value_t::number_float:
      if (!v.is_number()) expected("a number");
      if (!std::isfinite(v.get<double>())) expected("a finite number");
      break;
    case json::value_t::boolean:
      if (!v.is_boolean()) expected("true or false");
      break;
    case json::value_t::string:
      if (!v.is_string()) expected("a string");
      break;
    case json::value_t::array:
      if (!v.is_array()) expected("an array");
      if (!like.empty())
        for (size_t i = 0; i < v.size(); ++i)
          check_type(v[i], like[0], path + "[" + std::to_string(i) + "]", source);
      break;
    default:
      EBM_CHECK(false, "config schema has an unexpected type at " + path);
  }
}

// Merges `user` into `dst` key by key; `schema` is the defaults subtree at `path`. Arrays are
// replaced whole (channels), objects merged, so a file may set only the keys it cares about.
void merge_checked(json& dst, const json& user, const json& schema, const std::string& path,
                   const std::string& source) {
  if (!user.is_object()) {
    if (path.empty()) user_fail(source, ": the config must be a JSON object, got ", shown_json(user));
    user_fail(source, ": \"", path, "\" must be an object, got ", shown_json(user));
  }
  if (!dst.is_object()) dst = json::object();
  for (const auto& [k, v] : user.items()) {
    const std::string p = path.empty() ? k : path + "." + k;
    const auto it = schema.find(k);
    if (it == schema.end()) user_fail(source, ": unknown key \"", p, "\" (", known_keys(schema, path), ")");
    if (it->is_object()) {
      merge_checked(dst[k], v, *it, p, source);
    } else {
      check_type(v, *it, p, source);
      dst[k] = v;
    }
  }
}

// Reads the merged (type-checked) tree into the struct, one range rule per key.
class RangeReader {
 public:
  RangeReader(const json& root, const std::string& source) : root_(root), source_(source) {}

  const json& at(std::string_view path) const {
    const json* node = &root_;
    size_t start = 0;
    while (true) {
      const size_t dot = path.find('.', start);
      node = &node->at(std::string(path.substr(start, dot - start)));
      if (dot == std::string_view::npos) return *node;
      start = dot + 1;
    }
  }

  template <class... Args>
  [[noreturn]] void fail(std::string_view path, Args&&... args) const {
    user_fail(source_, ": \"", path, "\" ", std::forward<Args>(args)...);
  }

  int64_t integer(std::string_view path, int64_t lo, int64_t hi) const {
    return integer_value(at(path), path, lo, hi);
  }
  int int32(std::string_view path, int64_t lo, int64_t hi = kIntMax) const {
    return static_cast<int>(integer(path, lo, hi));
  }
  int64_t int64(std::string_view path, int64_t lo) const { return integer(path, lo, kInt64Max); }

  int64_t integer_value(const json& v, std::string_view path, int64_t lo, int64_t hi) const {
    // Unsigned JSON values above INT64_MAX cannot be compared as int64.
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
      fail(path, "must be <= ", hi, ", got ", shown_json(v));
    const int64_t x = v.get<int64_t>();
    if (x < lo) fail(path, "must be >= ", lo, ", got ", shown_json(v));
    if (x > hi) fail(path, "must be <= ", hi, ", got ", shown_json(v));
    return x;
  }

  uint64_t uint64(std::string_view path) const {
    const json& v = at(path);
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.get<int64_t>() < 0) fail(path, "must be >= 0, got ", shown_json(v));
    return static_cast<uint64_t>(v.get<int64_t>());
  }

  // Bounds are closed unless marked open; infinite bounds are not checked.
  struct Range {
    double lo = -kInf, hi = kInf;
    bool lo_open = false, hi_open = false;
  };
  double real(std::string_view path, Range r) const {
    const json& v = at(path);
    const double x = v.get<double>();
    if (r.lo_open ? !(x > r.lo) : !(x >= r.lo))
      fail(path, "must be ", r.lo_open ? "> " : ">= ", r.lo, ", got ", shown_json(v));
    if (r.hi_open ? !(x < r.hi) : !(x <= r.hi))
      fail(path, "must be ", r.hi_open ? "< " : "<= ", r.hi, ", got ", shown_json(v));
    return x;
  }

  std::string nonempty(std::string_view path) const {
    std::string s = at(path).get<std::string>();
    if (s.empty()) fail(path, "must not be empty");
    return s;
  }

  std::string one_of(std::string_view path, std::initializer_list<std::string_view> allowed) const {
    std::string s = at(path).get<std::string>();
    std::string list;
    for (const auto a : allowed) {
      if (s == a) return s;
      list += (list.empty() ? "" : ", ") + std::string(a);
    }
    fail(path, "must be one of ", list, ", got ", shown_json(at(path)));
  }

  bool boolean(std::string_view path) const { return at(path).get<bool>(); }

 private:
  const json& root_;
  const std::string& source_;
};

}  // namespace

json config_defaults_json() { return config_to_json(Config{}); }

json config_to_json(const Config& c) {
  const auto& d = c.data;
  const auto& m = c.model;
  const auto& s = c.sampler;
  const auto& b = c.buffer;
  const auto& t = c.train;
  const auto& g = c.generate;
  return {
      {"backend", c.backend},
      {"seed", c.seed},
      {"output_dir", c.output_dir},
      {"data", {{"dataset", d.dataset}, {"dir", d.dir}, {"pad_to", d.pad_to},
                {"batch_size", d.batch_size}, {"limit", d.limit}, {"shift", d.shift}}},
      {"model", {{"channels", m.channels}, {"kernel_size", m.kernel_size}, {"stride", m.stride},
                 {"activation", m.activation}, {"outputs", m.outputs}, {"spectral_norm", m.spectral_norm}}},
      {"sampler", {{"steps", s.steps}, {"step_size", s.step_size}, {"noise", s.noise},
                   {"grad_clip", s.grad_clip}}},
      {"buffer", {{"capacity", b.capacity}, {"initial", b.initial}, {"reinit_prob", b.reinit_prob},
                  {"per_class", b.per_class}}},
      {"train", {{"epochs", t.epochs}, {"lr", t.lr},
                 {"lr_schedule", t.lr_schedule}, {"lr_warmup_steps", t.lr_warmup_steps}, {"lr_gamma", t.lr_gamma},
                 {"lr_step_epochs", t.lr_step_epochs}, {"lr_min_factor", t.lr_min_factor},
                 {"beta1", t.beta1}, {"beta2", t.beta2},
                 {"eps", t.eps}, {"alpha", t.alpha}, {"real_noise", t.real_noise},
                 {"max_steps", t.max_steps}, {"log_every", t.log_every},
                 {"checkpoint_every", t.checkpoint_every}, {"keep_checkpoints", t.keep_checkpoints},
                 {"validate", t.validate}, {"tensorboard", t.tensorboard},
                 {"comm_timeout_s", t.comm_timeout_s}, {"ema_decay", t.ema_decay},
                 {"objective", t.objective}, {"cd_weight", t.cd_weight}, {"ce_weight", t.ce_weight},
                 {"divergence", {{"max_abs_f", t.divergence.max_abs_f},
                                 {"action", t.divergence.action},
                                 {"lr_factor", t.divergence.lr_factor},
                                 {"max_rollbacks", t.divergence.max_rollbacks},
                                 {"drift_factor", t.divergence.drift_factor},
                                 {"drift_window", t.divergence.drift_window},
                                 {"drift_lookback", t.divergence.drift_lookback}}},
                 {"eval", {{"every", t.eval.every}, {"n", t.eval.n}, {"ood", t.eval.ood}}}}},
      {"generate", {{"n", g.n}, {"steps", g.steps}, {"step_size", g.step_size}, {"noise", g.noise}}},
      {"cuda", {{"tf32", c.cuda.tf32}, {"device", c.cuda.device}, {"graphs", c.cuda.graphs},
                {"deterministic", c.cuda.deterministic}, {"langevin", c.cuda.langevin}, {"chain", c.cuda.chain},
                {"precision", c.cuda.precision}}},
  };
}

Config config_from_json(const json& user, const std::string& source) {
  const json schema = config_defaults_json();
  json merged = schema;
  merge_checked(merged, user, schema, "", source);

  const RangeReader r(merged, source);
  Config c;
  c.backend = r.one_of("backend", {"auto", "cpu", "cuda"});
  c.seed = r.uint64("seed");
  c.output_dir = r.nonempty("output_dir");

  c.data.dataset = r.one_of("data.dataset", {"mnist", "fashion-mnist"});
  c.data.dir = r.nonempty("data.dir");
  c.data.pad_to = r.int32("data.pad_to", 28, 256);
  c.data.batch_size = r.int32("data.batch_size", 1, 65536);
  c.data.limit = r.int64("data.limit", 0);
  c.data.shift = r.int32("data.shift", 0, 8);

  // Each "same"-padded conv maps H -> ceil(H/stride) >= 1, so any depth leaves at least 1x1.
  const json& channels = r.at("model.channels");
  if (channels.empty()) r.fail("model.channels", "must not be empty");
  if (channels.size() > 8) r.fail("model.channels", "must have at most 8 layers, got ", channels.size());
  c.model.channels.clear();
  for (size_t i = 0; i < channels.size(); ++i) {
    const std::string path = "model.channels[" + std::to_string(i) + "]";
    c.model.channels.push_back(static_cast<int>(r.integer_value(channels[i], path, 1, 4096)));
  }
  c.model.kernel_size = r.int32("model.kernel_size", 1, 15);
  if (c.model.kernel_size % 2 == 0) r.fail("model.kernel_size", "must be odd, got ", c.model.kernel_size);
  c.model.stride = r.int32("model.stride", 1, 4);
  c.model.activation = r.one_of("model.activation", {"swish"});
  c.model.outputs = r.int32("model.outputs", 1, 1000);
  c.model.spectral_norm = r.boolean("model.spectral_norm");

  c.sampler.steps = r.int32("sampler.steps", 0);
  c.sampler.step_size = r.real("sampler.step_size", {.lo = 0});
  c.sampler.noise = r.real("sampler.noise", {.lo = 0});
  c.sampler.grad_clip = r.real("sampler.grad_clip", {.lo = 0, .lo_open = true});

  c.buffer.capacity = r.int32("buffer.capacity", 1);
  c.buffer.initial = r.int32("buffer.initial", 1);
  if (c.buffer.initial > c.buffer.capacity)
    r.fail("buffer.initial", "must be <= buffer.capacity (", c.buffer.capacity, "), got ", c.buffer.initial);
  c.buffer.reinit_prob = r.real("buffer.reinit_prob", {.lo = 0, .hi = 1});
  c.buffer.per_class = r.boolean("buffer.per_class");

  auto& t = c.train;
  t.epochs = r.int32("train.epochs", 1);
  t.lr = r.real("train.lr", {.lo = 0, .lo_open = true});
  t.lr_schedule = r.one_of("train.lr_schedule", {"constant", "step", "cosine"});
  t.lr_warmup_steps = r.int64("train.lr_warmup_steps", 0);
  t.lr_gamma = r.real("train.lr_gamma", {.lo = 0, .hi = 1, .lo_open = true});
  t.lr_step_epochs = r.int32("train.lr_step_epochs", 1);
  t.lr_min_factor = r.real("train.lr_min_factor", {.lo = 0, .hi = 1});
  t.beta1 = r.real("train.beta1", {.lo = 0, .hi = 1, .hi_open = true});
  t.beta2 = r.real("train.beta2", {.lo = 0, .hi = 1, .hi_open = true});
  t.eps = r.real("train.eps", {.lo = 0, .lo_open = true});
  t.alpha = r.real("train.alpha", {.lo = 0});
  t.real_noise = r.real("train.real_noise", {.lo = 0});
  t.max_steps = r.int64("train.max_steps", 0);
  t.log_every = r.int32("train.log_every", 1);
  t.checkpoint_every = r.int64("train.checkpoint_every", 0);
  t.keep_checkpoints = r.int32("train.keep_checkpoints", 0);
  t.validate = r.boolean("train.validate");
  t.tensorboard = r.boolean("train.tensorboard");
  t.comm_timeout_s = r.real("train.comm_timeout_s", {.lo = 0, .lo_open = true});
  t.ema_decay = r.real("train.ema_decay", {.lo = 0, .hi = 1, .hi_open = true});
  t.objective = r.one_of("train.objective", {"cd", "jem"});
  t.cd_weight = r.real("train.cd_weight", {.lo = 0});
  t.ce_weight = r.real("train.ce_weight", {.lo = 0});
  if (c.buffer.per_class) {  // one ring per class: chains need a class, and every ring a first image
    if (t.objective != "jem")
      r.fail("buffer.per_class", "needs train.objective \"jem\" (a class for each chain), got \"", t.objective, "\"");
    if (c.buffer.initial < c.model.outputs)
      r.fail("buffer.per_class", "needs buffer.initial >= model.outputs (", c.model.outputs,
             ": one first image per class's ring), got buffer.initial ", c.buffer.initial);
  }
  t.divergence.max_abs_f = r.real("train.divergence.max_abs_f", {.lo = 0, .lo_open = true});
  t.divergence.action = r.one_of("train.divergence.action", {"stop", "rollback"});
  t.divergence.lr_factor = r.real("train.divergence.lr_factor", {.lo = 0, .hi = 1, .lo_open = true});
  t.divergence.max_rollbacks = r.int32("train.divergence.max_rollbacks", 0);
  t.divergence.drift_factor = r.real("train.divergence.drift_factor", {.lo = 0});
  if (t.divergence.drift_factor > 0 && t.divergence.drift_factor <= 1)
    r.fail("train.divergence.drift_factor", "must be 0 (off) or > 1 (a ratio to the regulariser's running level), got ",
           shown_json(r.at("train.divergence.drift_factor")));
  t.divergence.drift_window = r.int32("train.divergence.drift_window", 3);
  t.divergence.drift_lookback = r.int32("train.divergence.drift_lookback", 1, 16);  // each a whole state in memory
  if (t.divergence.drift_factor > 0 && t.alpha == 0)
    r.fail("train.divergence.drift_factor", "watches the regulariser, which train.alpha = 0 switches off; set train.alpha > 0 "
           "or train.divergence.drift_factor to 0");
  t.eval.every = r.int32("train.eval.every", 0);
  t.eval.n = r.int32("train.eval.n", 2, kMaxGenerateN);
  t.eval.ood = r.at("train.eval.ood").get<std::string>();

  c.generate.n = r.int32("generate.n", 1, kMaxGenerateN);
  c.generate.steps = r.int32("generate.steps", 0);
  c.generate.step_size = r.real("generate.step_size", {.lo = 0});
  c.generate.noise = r.real("generate.noise", {.lo = 0});

  c.cuda.tf32 = r.boolean("cuda.tf32");
  c.cuda.device = r.int32("cuda.device", 0);
  c.cuda.graphs = r.boolean("cuda.graphs");
  c.cuda.deterministic = r.boolean("cuda.deterministic");
  c.cuda.langevin = r.one_of("cuda.langevin", {"layers", "fused"});
  c.cuda.chain = r.one_of("cuda.chain", {"auto", "resident", "tiled", "generic"});
  c.cuda.precision = r.one_of("cuda.precision", {"fp32", "tf32"});
  return c;
}

namespace {

// `key_path` inside the value of `key` ("train" + "lr" -> "train.lr", "model.channels" + "[1]").
std::string joined_path(const std::string& key, const std::string& key_path) {
  if (key_path.empty()) return key;
  return key + (key_path.front() == '[' ? "" : ".") + key_path;
}

// A config document's text: syntax errors as JSON errors; a number beyond a double and a repeated key
// (which nlohmann::json would keep silently, last one winning) in the config's own words, with the key.
json parse_config_text(const std::string& text, const std::string& source) {
  JsonText j = read_json_text(text);
  switch (j.problem) {
    case JsonText::Problem::kNone:
      return std::move(j.value);
    case JsonText::Problem::kSyntax:
      user_fail(source, ": invalid JSON: ", j.detail);
    case JsonText::Problem::kNumberOverflow:
      if (j.key_path.empty()) user_fail(source, ": invalid JSON: number ", j.detail, " is beyond the range of a double");
      user_fail(source, ": \"", j.key_path, "\" must be a finite number, got ", j.detail, " (beyond the range of a double)");
    case JsonText::Problem::kDuplicateKey:
      user_fail(source, ": duplicate key \"", j.key_path, "\" (a key may appear once in an object)");
  }
  EBM_CHECK(false, "unhandled JSON problem");
}

// "train.divergence.action" → {"train", "divergence", "action"} (empty parts kept: set_key refuses them).
std::vector<std::string> key_parts(const std::string& key) {
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

// The schema's value under the key path `parts`, or nullptr where the schema has no such key.
const json* schema_leaf(const json& schema, const std::vector<std::string>& parts) {
  const json* like = &schema;
  for (const auto& p : parts) {
    const auto it = like->is_object() ? like->find(p) : like->end();
    if (!like->is_object() || it == like->end()) return nullptr;
    like = &*it;
  }
  return like;
}

// Sets dotted `key` to `text` in `config`, read as --set reads it, then checks key and type as a file
// is checked; `source` names the assignment or the flag in messages.
void set_key(json& config, const std::string& key, const std::string& text, const std::string& source) {
  const std::vector<std::string> parts = key_parts(key);
  for (const auto& p : parts)
    if (p.empty()) user_fail(source, ": empty part in key \"", key, "\"");

  // The schema leaf, where the key is known, decides how the text is read: string keys take the
  // text as is unless it is a quoted JSON string (output_dir=2024 stays a string), others take it
  // as JSON where it parses. A number beyond a double or a repeated key is JSON that does parse,
  // but wrongly: an error naming the key, not a string value that fails the type check.
  const json schema = config_defaults_json();
  const json* like = schema_leaf(schema, parts);
  // A value taken as a string must be text JSON can hold (configs are written back as JSON).
  try {
    (void)json(text).dump();
  } catch (const json::type_error&) {
    user_fail(source, ": the value of \"", key, "\" is not valid UTF-8");
  }
  JsonText parsed = read_json_text(text);
  json value;
  if (like && like->is_string()) {
    value = parsed.problem == JsonText::Problem::kNone && parsed.value.is_string() ? std::move(parsed.value) : json(text);
  } else {
    switch (parsed.problem) {
      case JsonText::Problem::kNone:
        value = std::move(parsed.value);
        break;
      case JsonText::Problem::kSyntax:
        value = text;
        break;
      case JsonText::Problem::kNumberOverflow:
        user_fail(source, ": \"", joined_path(key, parsed.key_path), "\" must be a finite number, got ", parsed.detail,
                  " (beyond the range of a double)");
      case JsonText::Problem::kDuplicateKey:
        user_fail(source, ": duplicate key \"", joined_path(key, parsed.key_path), "\" (a key may appear once in an object)");
    }
  }

  // Nest the value under its key path and merge it like a file, for the same key and type checks.
  for (auto p = parts.rbegin(); p != parts.rend(); ++p) value = json::object({{*p, std::move(value)}});
  merge_checked(config, value, schema, "", source);
}

}  // namespace

bool config_key_is_text(const std::string& key) {
  const json schema = config_defaults_json();
  const json* like = schema_leaf(schema, key_parts(key));
  return like && like->is_string();
}

void apply_override(json& config, const std::string& assignment, OverrideSource from) {
  const bool flag = from == OverrideSource::kFlag;
  const std::string name = flag ? "--set" : "overrides";
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos)
    user_fail(name, " \"", assignment, "\": expected dotted.key=value (e.g. ",
              flag ? "--set train.lr=3e-4" : "\"train.lr=3e-4\", or a dict {\"train.lr\": 3e-4}", ")");
  const std::string key = assignment.substr(0, eq);
  if (key.empty()) user_fail(name, " \"", assignment, "\": the key before '=' is empty");
  set_key(config, key, assignment.substr(eq + 1), flag ? "--set " + assignment : "overrides: " + assignment);
}

Config config_from_flag(const std::string& flag, const std::string& key, const std::string& text) {
  json user = json::object();
  const std::string source = "option " + flag;
  set_key(user, key, text, source);
  return config_from_json(user, source);
}

Config config_from_text(const std::string& text, const std::string& source, const std::vector<std::string>& overrides,
                        OverrideSource from) {
  const json file = parse_config_text(text, source);
  const json schema = config_defaults_json();
  json merged = schema;
  merge_checked(merged, file, schema, "", source);
  for (const auto& o : overrides) apply_override(merged, o, from);
  if (overrides.empty()) return config_from_json(merged, source);
  return config_from_json(merged, source + (from == OverrideSource::kFlag ? " (with --set overrides)" : " (with overrides)"));
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides, OverrideSource from) {
  // A pipe or /dev/stdin is fine (the text is read once); 16 MiB is far beyond any config.
  return config_from_text(read_text_file(path, "a JSON config file", size_t{16} << 20), path, overrides, from);
}

}  // namespace ebm
