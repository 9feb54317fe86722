// Strict JSON text: what nlohmann::json accepts silently (a repeated key, last one winning) or reports
// as an exception that is not a parse error (a number beyond a double) becomes a problem with a key path.
#include <gtest/gtest.h>

#include <string>

#include "host/io/json_text.hpp"

using namespace ebm;
using json = nlohmann::json;

TEST(JsonText, ValidDocumentsReadAsNlohmannReadsThem) {
  const std::string text = R"({"a": {"x": 1, "y": [1.5, -2, "s", null, true]}, "b": {"x": 2}, "c": [{"x": 1}, {"x": 2}]})";
  const JsonText j = read_json_text(text);
  EXPECT_EQ(j.problem, JsonText::Problem::kNone);
  EXPECT_EQ(j.value, json::parse(text));  // equal keys in different objects are not repeats
  EXPECT_EQ(read_json_text("[1e308, -1e308, 1e-999]").value, json::parse("[1e308, -1e308, 0.0]"));
}

TEST(JsonText, NumbersBeyondADoubleNameTheirKeyPath) {
  struct Case {
    const char* text;
    const char* number;
    const char* path;
  } cases[] = {
      {R"({"train": {"lr": 1e999}})", "1e999", "train.lr"},
      {R"({"train": {"lr": -1e999}})", "-1e999", "train.lr"},
      {R"({"model": {"channels": [16, 2E+400]}})", "2E+400", "model.channels[1]"},
      {R"([0, [1, {"k": [5, 1e500]}]])", "1e500", "[1][1].k[1]"},
      {R"({"a": [{"b": 1}, {"b": 1e999}]})", "1e999", "a[1].b"},
      {"1e999", "1e999", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    const JsonText j = read_json_text(c.text);
    EXPECT_EQ(j.problem, JsonText::Problem::kNumberOverflow);
    EXPECT_EQ(j.detail, c.number);
    EXPECT_EQ(j.key_path, c.path);
    EXPECT_TRUE(j.value.is_null());
  }
  EXPECT_EQ(shown_key_path("train.lr"), "\"train.lr\"");
  EXPECT_EQ(shown_key_path(""), "the top level");
}

TEST(JsonText, RepeatedKeysAreProblems) {
  struct Case {
    const char* text;
    const char* key;
    const char* path;
  } cases[] = {
      {R"({"seed": 1, "seed": 2})", "seed", "seed"},
      {R"({"train": {"lr": 1e-3, "epochs": 2, "lr": 1e-4}})", "lr", "train.lr"},
      {R"([{"x": 1}, {"x": 1, "x": 2}])", "x", "[1].x"},
      {R"({"a": {"b": [0, {"c": {}, "c": []}]}})", "c", "a.b[1].c"},
      {R"({"": 1, "": 2})", "", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    const JsonText j = read_json_text(c.text);
    EXPECT_EQ(j.problem, JsonText::Problem::kDuplicateKey);
    EXPECT_EQ(j.detail, c.key);
    EXPECT_EQ(j.key_path, c.path);
  }
}

TEST(JsonText, SyntaxErrorsKeepNlohmannsPositionWithoutItsTag) {
  const JsonText j = read_json_text("{\n  \"a\": }");
  EXPECT_EQ(j.problem, JsonText::Problem::kSyntax);
  EXPECT_EQ(j.detail.rfind("parse error at line 2, column 8: syntax error", 0), 0u) << j.detail;
  EXPECT_EQ(read_json_text("").problem, JsonText::Problem::kSyntax);
  EXPECT_EQ(read_json_text("{\"a\": 1} x").problem, JsonText::Problem::kSyntax);
  const JsonText cut = read_json_text("[1,");
  EXPECT_EQ(cut.detail.rfind("parse error at line 1, column 4", 0), 0u) << cut.detail;
  EXPECT_EQ(cut.detail.find("[json.exception"), std::string::npos) << cut.detail;
}
