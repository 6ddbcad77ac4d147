// libFuzzer target: the on-disk object cache's reader, which decides whether
// bytes found on disk become machine code this process runs. The first input
// byte picks how the entry is made:
//   even: the rest of the input is the entry file, as found on disk;
//   odd:  a real entry (key and object taken from the input) is written by
//         cache_write and then damaged as the input says: truncated, a bit
//         flipped, or read back under another key.
// Properties: cache_read returns an object only for exactly the key it was
// stored with, and only that object; an entry it does not return is gone.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "codegen/object_cache.h"

namespace {

std::string g_dir;

std::string entry_path() { return g_dir + "/e.o"; }

void write_raw(const std::string& bytes) {
  const int fd = ::open(entry_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) std::abort();
  ::close(fd);
}

std::string read_raw() {
  std::string s;
  if (FILE* f = std::fopen(entry_path().c_str(), "rb")) {
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
    std::fclose(f);
  }
  return s;
}

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_object_cache: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char tmpl[] = "/tmp/bj_fuzz_cache_XXXXXX";
  if (!::mkdtemp(tmpl)) std::abort();
  g_dir = tmpl;
  std::atexit([] { std::filesystem::remove_all(g_dir); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string key = "graph @g", stored;
  if (data[0] % 2 == 0) {
    write_raw(in);
  } else {
    if (in.size() < 5) return 0;
    uint32_t where;
    std::memcpy(&where, in.data() + 1, 4);
    const std::string rest = in.substr(5);
    key = rest.substr(0, rest.size() / 2);
    const std::string object = rest.substr(rest.size() / 2);
    bj::codegen::cache_write(g_dir, "e", key, object);
    stored = read_raw();
    if (stored.empty()) finding("cache_write wrote nothing");
    switch (in[0] % 4) {
      case 0: break;                                                        // intact
      case 1: write_raw(stored.substr(0, where % stored.size())); break;    // truncated
      case 2: stored[(where / 8) % stored.size()] ^= static_cast<char>(1 << (where % 8)); write_raw(stored); break;
      case 3: key += static_cast<char>(where); break;                       // another key's entry
    }
    const std::optional<std::string> got = bj::codegen::cache_read(g_dir, "e", key);
    if (in[0] % 4 == 0 && got != object) finding("an intact entry was not read back as stored");
    if (in[0] % 4 == 1 && got) finding("a truncated entry was read");
    if (in[0] % 4 == 2 && got) finding("an entry with a flipped bit was read");
    if (in[0] % 4 == 3 && got) finding("an entry stored for one key was returned for another");
    if (!got && std::filesystem::exists(entry_path())) finding("a rejected entry was left on disk");
    ::unlink(entry_path().c_str());
    return 0;
  }
  const std::optional<std::string> got = bj::codegen::cache_read(g_dir, "e", key);
  if (got) {  // only a whole, well-formed entry for exactly this key
    constexpr size_t kHeader = 32;
    if (in.size() != kHeader + key.size() + got->size() || in.compare(kHeader, key.size(), key) != 0 ||
        in.compare(kHeader + key.size(), std::string::npos, *got) != 0)
      finding("an object was returned from an entry that does not hold it for this key");
  } else if (std::filesystem::exists(entry_path())) {
    finding("a rejected entry was left on disk");
  }
  ::unlink(entry_path().c_str());
  return 0;
}
