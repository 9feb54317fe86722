// Errors: library code throws ebm::Error carrying what failed and where; only main() turns it into
// a message and an exit code.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ebm {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A user-facing failure (bad config, bad file, missing data): the message alone is the whole story,
// so tools print it without file/line noise.
struct UserError : Error {
  using Error::Error;
};

[[noreturn]] inline void fail_at(const char* expr, const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << msg << " [" << expr << " failed at " << file << ":" << line << "]";
  throw Error(os.str());
}

// The length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF), or 0 where the bytes there are not one.
inline size_t utf8_sequence_length(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  const unsigned c = b(0);
  const auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) { return b(k) >= lo && b(k) <= hi; };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c >= 0xE1 && c <= 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// A message on one line whatever user text it echoes (a key, a tensor name or a header with a newline in
// it), and printable on a UTF-8 terminal whatever bytes a damaged file put in it: control characters and bytes
// that are not well-formed UTF-8 are written as escapes, \n, \r, \t, \xNN; UTF-8 text (σ, ×) is kept.
inline std::string one_line(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) {
      if (const size_t n = utf8_sequence_length(s, i)) {
        out.append(s, i, n);
        i += n;
      } else {
        out += {'\\', 'x', hex[u >> 4], hex[u & 15]};
        ++i;
      }
      continue;
    }
    ++i;
    if (u >= 0x20 && u != 0x7f) {
      out += c;
      continue;
    }
    out += '\\';
    if (c == '\n') out += 'n';
    else if (c == '\r') out += 'r';
    else if (c == '\t') out += 't';
    else out += {'x', hex[u >> 4], hex[u & 15]};
  }
  return out;
}

template <class... Args>
[[noreturn]] void user_fail(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw UserError(one_line(os.str()));
}

}  // namespace ebm

// Internal invariant: throws ebm::Error naming the expression, file and line.
#define EBM_CHECK(cond, msg)                                        \
  do {                                                              \
    if (!(cond)) ::ebm::fail_at(#cond, __FILE__, __LINE__, (msg));  \
  } while (0)
