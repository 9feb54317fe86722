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

// A message on one line whatever user text it echoes (a key, a tensor name or a header with a newline in
// it): control characters are written as escapes, \n, \r, \t, \xNN.
inline std::string one_line(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      out += c;
      continue;
    }
    static const char hex[] = "0123456789ABCDEF";
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
