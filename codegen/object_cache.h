// The on-disk cache of compiled objects. It holds machine code that the
// process will run, so every entry is treated as hostile input:
//   - the directory is per user (BJ_CACHE_DIR, else $XDG_CACHE_HOME/blockjit,
//     else ~/.cache/blockjit, else /tmp/blockjit-UID), created 0700; one
//     owned by another user or writable by others is refused (no cache);
//   - an entry stores its full key (the optimized graph's text, LLVM's
//     version, the CPU, its features and a hash of the code generator's
//     sources computed by the build) and a checksum, compared on load: an
//     object of another graph under this name is never run;
//   - only regular files are read (O_NOFOLLOW, non-blocking: a symlink, a
//     FIFO or a device is not followed, waited on or read), up to a size
//     limit, and any entry that fails to read, match or link is removed;
//   - writes go to a private temporary file renamed into place, removed on
//     any error (a full disk leaves nothing behind);
//   - the cache is bounded (BJ_CACHE_MB, default 512): least recently used
//     entries (by modification time, refreshed on each hit) are evicted.
#pragma once

#include <optional>
#include <string>

namespace bj::codegen {

/// The largest entry read: bigger files are removed, not read.
inline constexpr size_t kMaxCacheEntryBytes = size_t{256} << 20;

/// The cache directory for this user, created 0700 if missing; nothing (and one warning) if it
/// cannot be created or is not safe (another owner, writable by group or others).
std::optional<std::string> cache_dir();
bool cache_enabled();

/// The object stored under `name` for exactly `key`; nothing if absent. An entry that is not a
/// regular file, is too large, truncated, corrupt or stored for another key is removed.
std::optional<std::string> cache_read(const std::string& dir, const std::string& name, const std::string& key);
/// Stores `object` for `key` under `name` (atomically), then evicts least recently used entries
/// past BJ_CACHE_MB. A cache that cannot be written is only a slower cache: errors are silent.
void cache_write(const std::string& dir, const std::string& name, const std::string& key, const std::string& object);
/// Removes an entry (one that failed to link, say).
void cache_remove(const std::string& dir, const std::string& name);

/// A hash of the code generator's sources and the runtime's JIT ABI, computed by the build:
/// any edit to them makes every older entry a miss.
std::string codegen_source_hash();

}  // namespace bj::codegen
