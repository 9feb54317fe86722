// JSON text that users and other tools hand us (config files, --set values, a checkpoint's config.json,
// safetensors headers), read strictly. nlohmann::json on its own keeps the last of two equal keys without
// a word (so a duplicated "lr" or tensor entry is silently taken) and reports a number beyond a double
// (1e999) as an out_of_range exception rather than a parse error; here both are problems with a key path.
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ebm {

struct JsonText {
  enum class Problem { kNone, kSyntax, kNumberOverflow, kDuplicateKey };
  nlohmann::json value;              // the document (only when problem == kNone)
  Problem problem = Problem::kNone;
  std::string key_path;              // where: "train.lr", "model.channels[2]"; "" at the top level
  std::string detail;                // kSyntax: nlohmann's "parse error at line L, column C: ..." (no
                                     // exception tag); kNumberOverflow: the number as written ("1e999");
                                     // kDuplicateKey: the repeated key
};

// Never throws for bad text: each reader words the problem for its own format, naming its source (a
// config file says `"train.lr" must be a finite number`, a safetensors file `tensor 'x' appears twice`).
JsonText read_json_text(std::string_view text);

// A JSON key path for messages: "train.lr", "a.shape[1]"; "the top level" when empty.
std::string shown_key_path(const std::string& key_path);

// A JSON value for a one-line message: NaN/inf as numbers (dump() writes null), invalid UTF-8 as U+FFFD,
// longer than 60 characters cut with "...".
std::string shown_json(const nlohmann::json& v);

}  // namespace ebm
