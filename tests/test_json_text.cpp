// Strict JSON text: what nlohmann::json accepts silently (a repeated key, last one winning) or reports
// as an exception that is not a parse error (a number beyond a double) becomes a problem with a key path.
#include <gtest/gtest.h>

#include <string>

#include "engine/error.hpp"
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

// Messages echo user text and damaged files' bytes on one printable line (engine/error.hpp one_line): control
// characters and bytes that are not well-formed UTF-8 as \xNN escapes, UTF-8 text kept as it is.
TEST(OneLine, EscapesControlsAndMalformedUtf8KeepsUtf8) {
  EXPECT_EQ(one_line("a\nb\tc\x01"), "a\\nb\\tc\\x01");
  EXPECT_EQ(one_line("σ × — ok"), "σ × — ok");                        // 2- and 3-byte sequences
  EXPECT_EQ(one_line("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");          // a 4-byte one (U+1F600)
  EXPECT_EQ(one_line("\"__metadata\x9e\""), "\"__metadata\\x9E\"");     // a lone continuation byte
  EXPECT_EQ(one_line("\xff\xfe"), "\\xFF\\xFE");                         // never in UTF-8
  EXPECT_EQ(one_line("\xC3"), "\\xC3");                                  // a sequence cut short at the end
  EXPECT_EQ(one_line("\xC3(x"), "\\xC3(x");                              // ... or by an ASCII byte
  EXPECT_EQ(one_line("\xC0\xAF"), "\\xC0\\xAF");                         // an overlong '/'
  EXPECT_EQ(one_line("\xED\xA0\x80"), "\\xED\\xA0\\x80");                // a UTF-16 surrogate
  EXPECT_EQ(one_line("\xF4\x90\x80\x80"), "\\xF4\\x90\\x80\\x80");       // beyond U+10FFFF
  try {
    user_fail("bad key \"k\xff\"");
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "bad key \"k\\xFF\"");
  }
}
