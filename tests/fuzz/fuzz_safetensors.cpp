// libFuzzer target: safetensors files (host/io/safetensors.cpp) through SafeTensors::parse.
// On success: every tensor has a known dtype and numel(shape) * itemsize bytes, its typed getter
// returns them; saved with save() and loaded again, the same metadata and the same tensors (names,
// dtypes, shapes, bytes).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "host/io/safetensors.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {

constexpr const char* kPath = "fuzz.safetensors";


// The typed getter for the entry's dtype must return its bytes, reinterpreted.
void check_getter(const ebm::SafeTensors& st, const std::string& name, const ebm::StEntry& e) {
  auto same = [&](const void* p, size_t n) {
    FUZZ_CHECK(n == e.bytes.size() && (n == 0 || std::memcmp(p, e.bytes.data(), n) == 0),
               "getter for '" + name + "' (" + e.dtype + ") returned other bytes");
  };
  (void)ebm::fuzz::must_succeed("SafeTensors::get_*", [&] {
    if (e.dtype == "F32") {
      const ebm::Tensor t = st.get_f32(name);
      FUZZ_CHECK(t.shape == e.shape, "get_f32 shape");
      same(t.data.data(), t.data.size() * 4);
    } else if (e.dtype == "F64") {
      const auto v = st.get_f64(name);
      same(v.data(), v.size() * 8);
    } else if (e.dtype == "I64") {
      const auto v = st.get_i64(name);
      same(v.data(), v.size() * 8);
    } else if (e.dtype == "U64") {
      const auto v = st.get_u64(name);
      same(v.data(), v.size() * 8);
    } else if (e.dtype == "I32") {
      const auto v = st.get_i32(name);
      same(v.data(), v.size() * 4);
    } else if (e.dtype == "U8") {
      const auto v = st.get_u8(name);
      same(v.data(), v.size());
    }
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> file(data, data + size);
  ebm::SafeTensors st;
  if (!ebm::fuzz::parse("SafeTensors::parse", {kPath}, [&] { st = ebm::SafeTensors::parse(file, kPath); })) return 0;

  uint64_t covered = 0;
  for (const std::string& name : st.names()) {
    const ebm::StEntry& e = st.entry(name);
    const size_t isz = ebm::SafeTensors::itemsize(e.dtype);
    FUZZ_CHECK(isz != 0, "tensor '" + name + "' has dtype '" + e.dtype + "'");
    uint64_t nbytes = isz;
    bool ok = true;
    for (int64_t d : e.shape) ok = ok && d >= 0 && !__builtin_mul_overflow(nbytes, uint64_t(d), &nbytes);
    FUZZ_CHECK(ok && nbytes == e.bytes.size(), "tensor '" + name + "' " + ebm::shape_str(e.shape) + " " + e.dtype +
                                                   " holds " + std::to_string(e.bytes.size()) + " bytes");
    check_getter(st, name, e);
    covered += e.bytes.size();
  }
  {  // the format's rule: the tensors cover the data buffer exactly (no overlap, no hole, nothing after)
    uint64_t header_len = 0;
    std::memcpy(&header_len, data, 8);  // parse checked size >= 8 + header_len
    FUZZ_CHECK(covered == size - 8 - header_len, "tensors hold " + std::to_string(covered) + " bytes of a " +
                                                     std::to_string(size - 8 - header_len) + "-byte data buffer");
  }

  const std::string p = ebm::fuzz::scratch().path("rt.safetensors");
  ebm::SafeTensors back;
  if (!ebm::fuzz::must_succeed("SafeTensors::save/load", [&] {
        st.save(p);
        back = ebm::SafeTensors::load(p);
      }))
    return 0;
  FUZZ_CHECK(back.metadata == st.metadata, "metadata differs after save/load");
  FUZZ_CHECK(back.names() == st.names(), "tensor names differ after save/load");
  for (const std::string& name : st.names()) {
    const ebm::StEntry &a = st.entry(name), &b = back.entry(name);
    FUZZ_CHECK(a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes,
               "tensor '" + name + "' differs after save/load");
  }
  return 0;
}
