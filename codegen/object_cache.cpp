// The on-disk object cache (see object_cache.h).
#include "codegen/object_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include <fmt/format.h>

#include "ir/env.h"
#include "ir/hash.h"

namespace bj::codegen {

namespace {

constexpr char kMagic[8] = {'B', 'J', 'O', 'B', 'J', '0', '0', '2'};
constexpr size_t kHeader = sizeof kMagic + 3 * sizeof(uint64_t);  // magic, key size, object size, checksum

void warn_once(const std::string& what) {
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) std::fprintf(stderr, "blockjit: warning: %s; compiled code is not cached on disk\n", what.c_str());
}

std::string path_of(const std::string& dir, const std::string& name) { return dir + "/" + name + ".o"; }

/// Reads a whole regular file of at most `limit` bytes from an open descriptor; nothing on error.
std::optional<std::string> read_all(int fd, size_t size) {
  std::string data(size, '\0');
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::read(fd, data.data() + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    got += static_cast<size_t>(n);
  }
  char extra;
  if (::read(fd, &extra, 1) != 0) return std::nullopt;  // it grew while we read it
  return data;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

/// Removes least recently used entries until the cache is within its limit.
void evict(const std::string& dir) {
  const uint64_t limit = static_cast<uint64_t>(env::cache_mb()) << 20;
  struct Entry {
    std::filesystem::path path;
    std::filesystem::file_time_type used;
    uint64_t bytes;
  };
  std::vector<Entry> entries;
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".o" || !e.is_regular_file(ec)) continue;
    const uint64_t bytes = e.file_size(ec);
    if (ec) continue;
    entries.push_back({e.path(), e.last_write_time(ec), bytes});
    total += bytes;
  }
  if (total <= limit) return;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.used < b.used; });
  for (const Entry& e : entries) {
    if (total <= limit) break;
    if (std::filesystem::remove(e.path, ec)) total -= e.bytes;
  }
}

}  // namespace

std::optional<std::string> cache_dir() {
  env::cache_mb();  // checked (and a bad value reported) whenever the cache is used, not only when it grows
  std::string dir;
  if (auto d = env::cache_dir()) {
    dir = *d;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && x[0] == '/') {
    dir = std::string(x) + "/blockjit";
  } else if (const char* h = std::getenv("HOME"); h && h[0] == '/') {
    dir = std::string(h) + "/.cache/blockjit";
  } else {
    dir = fmt::format("{}/blockjit-{}", std::filesystem::temp_directory_path().string(), geteuid());
  }
  std::error_code ec;
  std::filesystem::path p(dir);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    warn_once(fmt::format("cannot create the cache directory {}: {}", dir, std::strerror(errno)));
    return std::nullopt;
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    warn_once(fmt::format("the cache directory {} is not a directory", dir));
    return std::nullopt;
  }
  if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
    warn_once(fmt::format("the cache directory {} is {}; another user could plant code there", dir,
                          st.st_uid != geteuid() ? "owned by another user" : "writable by other users"));
    return std::nullopt;
  }
  return dir;
}

bool cache_enabled() { return env::cache(); }

void cache_remove(const std::string& dir, const std::string& name) { ::unlink(path_of(dir, name).c_str()); }

std::optional<std::string> cache_read(const std::string& dir, const std::string& name, const std::string& key) {
  const std::string path = path_of(dir, name);
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) ::unlink(path.c_str());  // a symlink (ELOOP), unreadable...: not ours to trust
    return std::nullopt;
  }
  std::optional<std::string> data;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) <= kMaxCacheEntryBytes)
    data = read_all(fd, static_cast<size_t>(st.st_size));
  std::optional<std::string> object;
  if (data && data->size() >= kHeader && std::memcmp(data->data(), kMagic, sizeof kMagic) == 0) {
    uint64_t key_size, object_size, sum;
    std::memcpy(&key_size, data->data() + 8, 8);
    std::memcpy(&object_size, data->data() + 16, 8);
    std::memcpy(&sum, data->data() + 24, 8);
    const std::string_view body = std::string_view(*data).substr(kHeader);
    if (key_size <= body.size() && object_size == body.size() - key_size && fnv1a(body) == sum &&
        body.substr(0, key_size) == key)
      object = std::string(body.substr(key_size));
  }
  if (object)
    ::futimens(fd, nullptr);  // recently used: eviction goes by modification time
  ::close(fd);
  if (!object) ::unlink(path.c_str());  // truncated, corrupt, another key's, not a regular file, too large
  return object;
}

void cache_write(const std::string& dir, const std::string& name, const std::string& key, const std::string& object) {
  static std::atomic<uint64_t> counter{0};
  const std::string path = path_of(dir, name);
  const std::string tmp = fmt::format("{}.tmp.{}.{}", path, getpid(), counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return;
  std::string header(kHeader, '\0');
  const uint64_t key_size = key.size(), object_size = object.size(), sum = fnv1a(object, fnv1a(key));
  std::memcpy(header.data(), kMagic, sizeof kMagic);
  std::memcpy(header.data() + 8, &key_size, 8);
  std::memcpy(header.data() + 16, &object_size, 8);
  std::memcpy(header.data() + 24, &sum, 8);
  bool ok = write_all(fd, header) && write_all(fd, key) && write_all(fd, object);
  ok = (::close(fd) == 0) && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return;
  }
  evict(dir);
}

}  // namespace bj::codegen
