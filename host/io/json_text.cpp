#include "host/io/json_text.hpp"

#include <cmath>
#include <set>
#include <sstream>
#include <vector>


namespace ebm {

namespace {

using json = nlohmann::json;

// Where the parser is, one frame per open object or array, so that a problem can name its key path.
struct Frame {
  bool object = false;
  std::set<std::string> keys;  // object: the keys seen so far
  std::string key;             // object: the key whose value is being read
  size_t index = 0;            // array: the element being read
};

std::string path_of(const std::vector<Frame>& frames) {
  std::string p;
  for (const Frame& f : frames) {
    if (!f.object) {
      p += '[';
      p += std::to_string(f.index);
      p += ']';
    } else if (!f.keys.empty()) {  // no key yet: nothing to name
      if (!p.empty()) p += '.';
      p += f.key;
    }
  }
  return p;
}

// Thrown from the parser callback (nlohmann lets it through) to stop at the first repeated key.
struct RepeatedKey {
  std::string path, key;
};

// Deeper than any document we read (configs nest 3 levels, safetensors headers 3): nlohmann parses any
// depth, but printing a value (dump(), in error messages) recurses once per level, and 50,000 nested '['
// overflow the stack.
constexpr int kMaxDepth = 64;
struct TooDeep {
  std::string path;
};

// "[json.exception.parse_error.101] parse error at ..." -> "parse error at ...".
std::string without_tag(const std::string& what) {
  const size_t tag_end = what.find("] ");
  return what.starts_with("[json.exception") && tag_end != std::string::npos ? what.substr(tag_end + 2) : what;
}

}  // namespace

JsonText read_json_text(std::string_view text) {
  JsonText out;
  std::vector<Frame> frames;
  auto track = [&frames](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (frames.size() >= size_t(kMaxDepth)) throw TooDeep{path_of(frames)};
        frames.push_back(Frame{event == json::parse_event_t::object_start, {}, {}, 0});
        break;
      case json::parse_event_t::key: {
        Frame& top = frames.back();
        std::string k = parsed.get<std::string>();
        top.key = k;
        if (!top.keys.insert(std::move(k)).second) throw RepeatedKey{path_of(frames), top.key};
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames.pop_back();
        if (!frames.empty() && !frames.back().object) ++frames.back().index;
        break;
      case json::parse_event_t::value:
        if (!frames.empty() && !frames.back().object) ++frames.back().index;
        break;
    }
    return true;
  };
  try {
    out.value = json::parse(text.begin(), text.end(), track);
  } catch (const TooDeep& d) {
    out.problem = JsonText::Problem::kSyntax;
    out.key_path = d.path;
    out.detail = "arrays and objects nested deeper than " + std::to_string(kMaxDepth) + " levels";
  } catch (const RepeatedKey& r) {
    out.problem = JsonText::Problem::kDuplicateKey;
    out.key_path = r.path;
    out.detail = r.key;
  } catch (const json::out_of_range& e) {
    // 406: "number overflow parsing '1e999'" — the only out_of_range the text parser raises.
    const std::string what = e.what();
    const size_t open = what.find('\''), close = what.rfind('\'');
    out.problem = JsonText::Problem::kNumberOverflow;
    out.key_path = path_of(frames);
    out.detail = open != std::string::npos && close > open ? what.substr(open + 1, close - open - 1) : without_tag(what);
  } catch (const json::exception& e) {
    out.problem = JsonText::Problem::kSyntax;
    out.detail = without_tag(e.what());
  }
  if (out.problem != JsonText::Problem::kNone) out.value = nullptr;
  return out;
}

std::string shown_json(const json& v) {
  if (v.is_number_float() && !std::isfinite(v.get<double>())) {
    std::ostringstream os;
    os << v.get<double>();
    return os.str();
  }
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

std::string shown_key_path(const std::string& key_path) {
  return key_path.empty() ? std::string("the top level") : "\"" + key_path + "\"";
}

}  // namespace ebm
